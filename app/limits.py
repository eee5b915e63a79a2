"""Limits checked before any work: text in the path and query, the editor API's token, then
the body's size as it is read.

A pure ASGI middleware rather than a dependency, because FastAPI reads and parses a JSON body
before it solves a route's dependencies: an unauthenticated or oversized body must be refused
before that, at the cost of nothing but its headers.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.deps import STATE_KEY, Unauthorized, token_from_header
from app.config import get_settings
from app.validation import CONTROL, CONTROL_MESSAGE

# Methods that carry a body; the API refuses them without a valid token before reading it.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Routes taking more than a small JSON document: (method, path pattern, settings field).
_LARGE_BODIES = (
    ("POST", re.compile(r"/api/v1/subscribers/import/?"), "max_csv_bytes"),
    ("POST", re.compile(r"/api/v1/bounces/?"), "max_message_bytes"),
    # The newsroom's forms that carry a file: a CSV import, an issue with its hero image.
    ("POST", re.compile(r"/admin/subscribers/import/?"), "max_csv_bytes"),
    ("POST", re.compile(r"/admin/issues(/.*)?"), "max_message_bytes"),
)


class PayloadTooLarge(HTTPException):
    """A body past its route's limit. An HTTPException, so that FastAPI's own body reading
    passes it on as it is instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes for this route")


def body_limit(method: str, path: str) -> int:
    """The most bytes a request to `path` may carry."""
    settings = get_settings()
    for route_method, pattern, field in _LARGE_BODIES:
        if method == route_method and pattern.fullmatch(path):
            return int(getattr(settings, field))
    return settings.max_json_bytes


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def control_characters(scope: Scope) -> list[dict[str, Any]]:
    """Where the path or a query parameter breaks the one-line rule of app/validation.py, in
    the shape of FastAPI's own 422 (every filter, slug and id comes in through these)."""
    problems: list[dict[str, Any]] = []
    if CONTROL.search(scope["path"]):
        problems.append({"loc": ["path"], "msg": f"the path {CONTROL_MESSAGE}",
                         "type": "control_character"})
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        if CONTROL.search(name) or CONTROL.search(value):
            problems.append({"loc": ["query", name[:64]], "msg": f"{CONTROL_MESSAGE}",
                             "type": "control_character"})
    return problems


def _authorization(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    return None


class RequestGate:
    """Refuse a request to the editor API without a valid token, and any body over its limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        problems = control_characters(scope)
        if problems:
            await _refuse(scope, receive, send, 422, problems)
            return
        if path.startswith("/api/") and method in _BODY_METHODS:
            try:
                token = await anyio.to_thread.run_sync(token_from_header, _authorization(scope))
            except Unauthorized as exc:
                await _refuse(scope, receive, send, 401, exc.detail, exc.headers)
                return
            scope.setdefault("state", {})[STATE_KEY] = token
        limit = body_limit(method, path)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, 413, PayloadTooLarge(limit).detail)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except PayloadTooLarge as exc:
            # Read outside FastAPI's handlers (a thread pulling the body, say): answer here.
            if started:
                raise
            await _refuse(scope, receive, send, 413, exc.detail)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: Any,
                  headers: dict[str, str] | None = None) -> None:
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(
        scope, receive, send)
