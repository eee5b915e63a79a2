"""The guarded fetcher: the one place in Missive that fetches a URL (feeds, images for the PDF).

A URL an editor typed may point anywhere, including at this machine or its cloud's metadata
service. So: http(s) only; the host is resolved once, every address it resolves to must be a
public one, and the connection goes to that checked address (no second lookup a DNS rebinding
could answer differently); redirects are followed here, one hop at a time, each checked the same
way; the body is streamed and abandoned past a size limit, and the whole exchange has a deadline.
`MISSIVE_FETCH_ALLOW_HOSTS` lets listed `host[:port]` through the address check (a feed on the
intranet, the tests' local server).

It is synchronous and blocks: call it from sync routes (FastAPI runs them in a thread), the
command line, beat or a worker, never from an `async def`.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from typing import Any

import httpcore
import httpx

from app.config import get_settings
from app.errors import AppError

MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "Missive (self-hosted newsletter; feed and image fetcher)"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(AppError):
    """A URL was refused or its answer could not be used; `detail` says which and why."""

    status_code = 422


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int
    content_type: str
    body: bytes


# --- which addresses may be reached -----------------------------------------------------------


def _embedded(ip: IpAddress) -> list[IpAddress]:
    """IPv4 addresses carried inside an IPv6 one (mapped, 6to4, Teredo): they count too."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    out: list[IpAddress] = []
    for inner in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
        if inner is not None:
            out.append(inner)
    return out


def address_refusal(ip: IpAddress) -> str | None:
    """Why an address may not be fetched from, or None when it is an ordinary public one."""
    for candidate in (ip, *_embedded(ip)):
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address (cloud metadata services live there)"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_unspecified:
            return "an unspecified address"
        if candidate.is_private:
            return "a private address"
        if candidate.is_reserved:
            return "a reserved address"
        if not candidate.is_global:
            # Shared address space (100.64/10, where some clouds put metadata), and the like.
            return "an address that is not public"
    return None


def _allowed_hosts() -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for entry in get_settings().fetch_allow_hosts.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        host, port = entry, None
        if entry.startswith("["):  # [::1]:8080
            host, _, rest = entry[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        elif entry.count(":") == 1:
            name, _, number = entry.partition(":")
            if number.isdigit():
                host, port = name, int(number)
        out.append((host, port))
    return out


def _is_allowed(host: str, port: int) -> bool:
    return any(h == host and p in (None, port) for h, p in _allowed_hosts())


def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve the host {host!r}: {exc}") from exc
    addresses: list[IpAddress] = []
    for info in infos:
        # The zone of a scoped IPv6 address ("fe80::1%eth0") is not part of the address.
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchError(f"the host {host!r} has no address")
    return addresses


def check_url(url: str) -> tuple[httpx.URL, IpAddress]:
    """The parsed URL and the one address to connect to, or FetchError saying why not."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(f"{url[:200]!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise FetchError(f"{url[:200]!r}: only http:// and https:// URLs are fetched")
    if not parsed.host:
        raise FetchError(f"{url[:200]!r} has no host")
    if parsed.userinfo:
        raise FetchError(f"{url[:200]!r}: URLs with a user name or password are not fetched")
    host = parsed.host.lower()
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not _is_allowed(host, port):
        for ip in addresses:
            why = address_refusal(ip)
            if why:
                raise FetchError(f"{url[:200]!r} is not fetched: {host} resolves to {ip}, {why}")
    return parsed, addresses[0]


# --- the exchange -----------------------------------------------------------------------------


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the address that was checked, whatever name the URL carries; TLS still
    verifies the certificate against that name."""

    def __init__(self, ip: IpAddress) -> None:
        self.ip = ip

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return super().connect_tcp(str(self.ip), port, timeout=timeout,
                                   local_address=local_address, socket_options=socket_options)


@lru_cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


class _Body:
    """Collects a body up to a limit, undoing gzip or deflate without ever exceeding it."""

    def __init__(self, encoding: str, limit: int, url: str) -> None:
        self.limit, self.url = limit, url
        self.parts: list[bytes] = []
        self.size = 0
        if encoding in ("", "identity"):
            self.inflate: Any = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self.inflate = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
        else:
            raise FetchError(f"{url}: the answer is encoded as {encoding!r}, which is not read")

    def add(self, chunk: bytes) -> None:
        if self.inflate is not None:
            try:
                chunk = self.inflate.decompress(chunk, self.limit - self.size + 1)
            except zlib.error as exc:
                raise FetchError(f"{self.url}: the compressed answer is damaged") from exc
            if self.inflate.unconsumed_tail:
                self._too_large()
        self.size += len(chunk)
        if self.size > self.limit:
            self._too_large()
        self.parts.append(chunk)

    def _too_large(self) -> None:
        raise FetchError(f"{self.url}: the answer is larger than {_size(self.limit)}; "
                         "it was abandoned")


def _size(limit: int) -> str:
    return f"{limit / 1024 / 1024:g} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"


def _one(url: httpx.URL, ip: IpAddress, *, accept: str, limit: int, deadline: float,
         seconds: float) -> tuple[int, dict[str, str], bytes]:
    """One request to one checked address; a redirect is returned, not followed."""
    target = str(url)
    timeout = max(0.1, min(seconds, deadline - time.monotonic()))
    headers = [(b"Host", url.netloc), (b"User-Agent", USER_AGENT.encode()),
               (b"Accept", accept.encode()), (b"Accept-Encoding", b"gzip, identity")]
    timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    with httpcore.ConnectionPool(ssl_context=_tls(), network_backend=_PinnedBackend(ip),
                                 max_connections=1) as pool:
        try:
            with pool.stream("GET", target, headers=headers,
                             extensions={"timeout": timeouts}) as response:
                answer = {k.decode("latin-1").lower(): v.decode("latin-1")
                          for k, v in response.headers}
                if response.status in _REDIRECTS or not 200 <= response.status < 300:
                    return response.status, answer, b""
                declared = answer.get("content-length", "")
                if declared.isdigit() and int(declared) > limit and \
                        answer.get("content-encoding", "identity") == "identity":
                    raise FetchError(f"{target}: the answer is {_size(int(declared))}, more "
                                     f"than the {_size(limit)} allowed")
                body = _Body(answer.get("content-encoding", "").strip().lower(), limit, target)
                for chunk in response.iter_stream():
                    body.add(chunk)
                    if time.monotonic() > deadline:
                        raise FetchError(f"{target}: no complete answer within {seconds:g} s")
                return response.status, answer, b"".join(body.parts)
        except httpcore.TimeoutException as exc:
            raise FetchError(f"{target}: no answer within {seconds:g} s") from exc
        except httpcore.ConnectError as exc:
            raise FetchError(f"{target}: cannot connect to {ip}: {exc or 'refused'}") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise FetchError(f"{target}: the connection failed: {exc or type(exc).__name__}"
                             ) from exc


def fetch(url: str, *, accept: str = "*/*", max_bytes: int | None = None,
          timeout: float | None = None) -> Fetched:
    """GET `url` under the guard; FetchError (a 422 for an API caller) names each refusal:
    scheme, address, a redirect that leads somewhere refused, status, size, time."""
    settings = get_settings()
    limit = max_bytes or settings.fetch_max_bytes
    seconds = timeout or settings.fetch_timeout_seconds
    deadline = time.monotonic() + seconds
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        parsed, ip = check_url(current)
        status, headers, body = _one(parsed, ip, accept=accept, limit=limit, deadline=deadline,
                                     seconds=seconds)
        if status in _REDIRECTS:
            location = headers.get("location", "").strip()
            if not location:
                raise FetchError(f"{current}: a redirect ({status}) without a Location")
            try:
                current = str(parsed.join(location))
            except httpx.InvalidURL as exc:
                raise FetchError(f"{current}: redirects to an invalid URL") from exc
            continue
        if not 200 <= status < 300:
            raise FetchError(f"{current} answered {status} {_reason(status)}".rstrip())
        return Fetched(url=current, status=status, body=body,
                       content_type=headers.get("content-type", ""))
    raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
