"""Security headers on every response, and a strict Content-Security-Policy on every HTML page.

One middleware, so a page added later is covered without remembering to. A response that sets
its own policy (an issue's web version or preview, whose inline-styled email HTML needs a looser
one) keeps it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages are server-rendered with one stylesheet from /static and no script at all.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Confirmation and unsubscribe tokens live in page URLs: they must not leak onwards.
    "Referrer-Policy": "no-referrer",
}
# FastAPI's interactive docs are an inline script; they get every header but the policy.
_NO_PAGE_CSP = ("/docs", "/redoc")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        strict = not str(scope["path"]).startswith(_NO_PAGE_CSP)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                own = headers.get("content-security-policy", "")
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
                if "frame-ancestors 'self'" in own:  # the preview, framed by the editors' app
                    headers["X-Frame-Options"] = "SAMEORIGIN"
                is_html = headers.get("content-type", "").startswith("text/html")
                if is_html and strict:
                    headers.setdefault("Content-Security-Policy", PAGE_CSP)
            await send(message)

        await self.app(scope, receive, with_headers)
