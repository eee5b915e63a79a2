"""Limits before work: no token, no body read; no body past its route's limit."""

from __future__ import annotations

import socket
import threading
import time

import httpx

MB = 1024 * 1024


def _post_raw(url: str, path: str, headers: dict[str, str], size: int) -> str:
    """POST `size` bytes of JSON-ish filler over a raw socket; the status line answered.

    The server may answer and close before the whole body is sent: that is the point."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    chunk = b"[" + b"1," * (MB // 2 - 1) + b"1]"
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        sent = 0
        try:
            while sent < size:
                sock.sendall(chunk[: size - sent])
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(4096).decode("latin-1")
        except ConnectionResetError:
            answer = ""
    return answer.split("\r\n", 1)[0]


def test_unauthenticated_100_mb_bodies_are_refused_without_memory_growth(server, newsletter):
    before = server.rss_kib()
    answers: list[str] = []

    def one() -> None:
        answers.append(_post_raw(server.url, "/api/v1/subscribers", {}, 100 * MB))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    grown_mb = (server.rss_kib() - before) / 1024
    print(f"\nsix unauthenticated 100 MB bodies: RSS {before / 1024:.0f} MB, "
          f"grew {grown_mb:.1f} MB")
    assert all(a.startswith("HTTP/1.1 401") for a in answers), answers
    # Read and parsed, one such body took 170 MB.
    assert grown_mb < 8


def test_oversized_bodies_get_413_with_the_reason(server, token, newsletter):
    auth = {"Authorization": f"Bearer {token}"}
    answer = _post_raw(server.url, "/api/v1/subscribers", auth, 100 * MB)
    assert answer.startswith("HTTP/1.1 413"), answer
    # Without a Content-Length (chunked), the limit holds while reading.
    def chunks() -> object:
        for _ in range(3):
            yield b" " * MB
            time.sleep(0.01)

    r = httpx.post(f"{server.url}/api/v1/subscribers", content=chunks(),
                   headers={**auth, "content-type": "application/json"}, timeout=30)
    assert r.status_code == 413
    assert "larger than 1048576 bytes" in r.json()["detail"]
    # Public routes too.
    r = httpx.post(f"{server.url}/subscribe/alliance-digest", content=chunks(),
                   headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    assert r.status_code == 413
    # A CSV import may be larger than a JSON body.
    csv = b"email,name\n" + b"".join(f"big{i}@example.org,{'x' * 60}\n".encode()
                                     for i in range(20_000))
    assert len(csv) > MB
    r = httpx.post(f"{server.url}/api/v1/subscribers/import?newsletter=alliance-digest",
                   content=csv, headers={**auth, "content-type": "text/csv"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 20_000


def test_bad_token_is_refused_before_the_body(client, newsletter):
    r = client.post("/api/v1/subscribers", content=b"{not json",
                    headers={"Authorization": "Bearer nope", "content-type": "application/json"})
    assert r.status_code == 401
    assert r.json() == {"detail": "invalid or revoked token"}
    assert r.headers["www-authenticate"] == "Bearer"
