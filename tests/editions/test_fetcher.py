"""The guarded fetcher: what it refuses, and that it still fetches what it may."""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import time
from http.server import BaseHTTPRequestHandler

import pytest

from app.fetcher import FetchError, address_refusal, fetch


def test_fetches_from_an_allowed_host(feed_server):
    url = feed_server.serve("/feed.xml", "<rss/>", content_type="application/rss+xml")
    got = fetch(url)
    assert got.body == b"<rss/>"
    assert got.status == 200
    assert got.content_type == "application/rss+xml"
    assert got.url == url


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.100.100.200", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::",
    "0.0.0.0",  # noqa: S104  (an address to refuse, not one to bind)
    "fe80::1", "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "2002:7f00:0001::1",
])
def test_addresses_that_are_refused(address):
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("url", "why"), [
    ("file:///etc/passwd", "only http:// and https://"),
    ("ftp://example.org/feed", "only http:// and https://"),
    ("gopher://127.0.0.1:70/", "only http:// and https://"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]/", "loopback"),
    ("http://10.0.0.8/feed", "private address"),
    ("http://localhost/feed", "loopback"),
    ("http://user:secret@example.org/feed", "user name or password"),
    ("not a url", "only http:// and https://"),
])
def test_refusals_name_their_reason(test_env, url, why):
    with pytest.raises(FetchError) as caught:
        fetch(url)
    assert why in str(caught.value.detail)
    assert caught.value.status_code == 422


def test_the_allow_list_is_per_port(feed_server):
    # Allowed: 127.0.0.1 on the feed server's port only.
    with pytest.raises(FetchError, match="loopback"):
        fetch(f"http://127.0.0.1:{feed_server.port + 1}/feed.xml")
    with pytest.raises(FetchError, match="loopback"):
        fetch(f"http://localhost:{feed_server.port}/feed.xml")
    assert feed_server.hits == []


def test_redirects_are_followed_and_each_hop_checked(feed_server):
    feed_server.serve("/final.xml", "<feed/>")
    feed_server.serve("/hop", b"", status=302, Location="/final.xml")
    got = fetch(feed_server.url("/hop"))
    assert got.body == b"<feed/>"
    assert got.url == feed_server.url("/final.xml")

    other = f"http://127.0.0.1:{feed_server.port + 1}/feed.xml"
    feed_server.serve("/away", b"", status=301, Location=other)
    with pytest.raises(FetchError) as caught:
        fetch(feed_server.url("/away"))
    assert "127.0.0.1" in caught.value.detail and "loopback" in caught.value.detail

    feed_server.serve("/meta", b"", status=307, Location="http://169.254.169.254/latest/")
    with pytest.raises(FetchError, match="link-local"):
        fetch(feed_server.url("/meta"))


def test_redirect_loops_end(feed_server):
    feed_server.serve("/loop", b"", status=302, Location="/loop")
    with pytest.raises(FetchError, match="more than 5 redirects"):
        fetch(feed_server.url("/loop"))
    assert len(feed_server.hits) == 6


def test_error_statuses_are_named(feed_server):
    with pytest.raises(FetchError, match="answered 404 Not Found"):
        fetch(feed_server.url("/missing.xml"))
    feed_server.serve("/broken", "oops", status=500)
    with pytest.raises(FetchError, match="answered 500 Internal Server Error"):
        fetch(feed_server.url("/broken"))


def test_a_declared_large_body_is_refused(feed_server):
    feed_server.serve("/big", b"x" * 300_000)
    with pytest.raises(FetchError, match="larger than|more than"):
        fetch(feed_server.url("/big"), max_bytes=100_000)


def _endless(handler: BaseHTTPRequestHandler) -> None:
    # No Content-Length: the fetcher must count as it reads.
    handler.send_response(200)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Connection", "close")
    handler.end_headers()
    try:
        for _ in range(2000):
            handler.wfile.write(b"y" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass
    handler.close_connection = True


def test_an_undeclared_large_body_is_abandoned(feed_server):
    feed_server.routes["/endless"] = _endless
    started = time.monotonic()
    with pytest.raises(FetchError, match="abandoned"):
        fetch(feed_server.url("/endless"), max_bytes=1024 * 1024)
    # 128 MB would have been sent; it stopped soon after the first megabyte.
    assert time.monotonic() - started < 30


def test_a_compressed_bomb_is_abandoned(feed_server):
    bomb = gzip.compress(b"\0" * 20_000_000)
    feed_server.serve("/bomb", bomb, **{"Content-Encoding": "gzip"})
    with pytest.raises(FetchError, match="abandoned"):
        fetch(feed_server.url("/bomb"), max_bytes=1024 * 1024)
    feed_server.serve("/small.gz", gzip.compress(b"<rss>hello</rss>"),
                      **{"Content-Encoding": "gzip"})
    assert fetch(feed_server.url("/small.gz")).body == b"<rss>hello</rss>"


def _slow(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(3)
    handler.send_response(200)
    handler.send_header("Content-Length", "2")
    handler.end_headers()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        handler.wfile.write(b"ok")  # the fetcher has given up by now, as it should


def test_a_slow_server_times_out(feed_server):
    feed_server.routes["/slow"] = _slow
    with pytest.raises(FetchError, match="no answer within 0.5 s"):
        fetch(feed_server.url("/slow"), timeout=0.5)
