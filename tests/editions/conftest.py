"""A web server the tests run on a free port, for feeds and images, and the fetcher's allow list
pointing at it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Route = tuple[int, dict[str, str], bytes] | Callable[[BaseHTTPRequestHandler], None]


@dataclass
class FeedServer:
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, body: bytes | str, content_type: str = "application/xml",
              status: int = 200, **headers: str) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = (status, {"Content-Type": content_type, **headers}, data)
        return self.url(path)


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            server.hits.append(self.path)
            route = server.routes.get(self.path)
            if route is None:
                route = (404, {"Content-Type": "text/plain"}, b"not here")
            if callable(route):
                route(self)
                return
            status, headers, body = route
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # The fetcher may give up on a large body: that is the point.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def feed_server(monkeypatch: pytest.MonkeyPatch, test_env: dict[str, str]) -> Iterator[FeedServer]:
    """A local server the guarded fetcher is allowed to reach (only on its own port)."""
    from app.config import get_settings

    holder = FeedServer(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(holder))
    httpd.daemon_threads = True
    holder.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MISSIVE_FETCH_ALLOW_HOSTS", f"127.0.0.1:{holder.port}")
    get_settings.cache_clear()
    yield holder
    httpd.shutdown()
    httpd.server_close()
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def mark_sent(db: Any) -> Callable[..., Any]:
    """Move an issue to `sent` as the sending pipeline would."""
    from datetime import UTC, datetime

    from app.issues import service

    def send(issue: Any, at: Any = None) -> Any:
        service.set_status(db, issue, "sending")
        service.set_status(db, issue, "sent", at=at or datetime.now(UTC))
        db.commit()
        return issue

    return send
