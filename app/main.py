"""The web application: editor API under /api/v1, public pages elsewhere."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app import models  # noqa: F401  (every table registered before the first query)
from app.auth.router import router as tokens_router
from app.bounces.router import router as bounces_router
from app.config import get_settings
from app.editions.router import public_router as editions_public_router
from app.editions.router import router as editions_router
from app.errors import AppError
from app.headers import SecurityHeaders
from app.issues.archive import router as archive_router
from app.issues.router import router as issues_router
from app.limits import RequestGate
from app.newsletters.router import router as newsletters_router
from app.newsroom.router import install as install_newsroom
from app.openapi import install as install_openapi
from app.ops.health import router as health_router
from app.ops.metrics import router as metrics_router
from app.ops.middleware import RequestIdMiddleware
from app.privacy.router import router as privacy_router
from app.resources import STATIC
from app.sending.router import router as sending_router
from app.signup.router import router as signup_router
from app.subscribers.router import router as subscribers_router
from app.web import pages

log = logging.getLogger("missive.web")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    headers = getattr(exc, "headers", None)
    if _wants_html(request):
        return pages().TemplateResponse(
            request, "message.html",
            {"newsletter": None, "title": "Sorry", "message": str(exc.detail)},
            status_code=exc.status_code, headers=headers,
        )
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # The default echoes each bad input back; a NaN there cannot be written as JSON (a 500).
    errors = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the methods of the first route that matched the path; Allow
        # should name every method the path has (GET and POST on /api/v1/issues are two routes).
        allowed = _documented_methods(request.app, request.url.path)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    return await http_exception_handler(
        request, StarletteHTTPException(exc.status_code, exc.detail, headers=headers))


def _documented_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document gives the path template matching `path`."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "allow", None)
    if table is None:
        table = []
        for template, operations in app.openapi()["paths"].items():
            regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            table.append((re.compile(f"^{regex}$"), sorted(m.upper() for m in operations)))
        table.sort(key=lambda entry: entry[0].pattern.count("[^/]+"))  # /issues/next first
        app.state.allow = table
    for pattern, methods in table:
        if pattern.match(path):
            return methods
    return []


def create_app() -> FastAPI:
    settings = get_settings()  # refuse to start on a configuration that cannot work
    app = FastAPI(
        title="Missive",
        description="Self-hosted newsletter distribution: sign-ups, issues, sending, bounces.",
        version="0.1.0",
        docs_url=None,  # served offline by the newsroom (app/newsroom/router.py)
    )
    app.add_middleware(RequestGate)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(newsletters_router)
    app.include_router(subscribers_router)
    app.include_router(privacy_router)
    app.include_router(signup_router)
    app.include_router(issues_router)
    app.include_router(editions_router)
    app.include_router(editions_public_router)
    app.include_router(archive_router)
    app.include_router(sending_router)
    app.include_router(bounces_router)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.add_middleware(RequestIdMiddleware)
    proxies = settings.proxy_networks
    if proxies:
        # Only these peers may say who the client is (X-Forwarded-For): the rate limits and
        # the consent log use that address.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
    app.include_router(tokens_router)
    install_newsroom(app)
    install_openapi(app)
    # Images and PDFs an issue links to when they live on this server (the sample issue's).
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False),
              name="static")

    log.info("web app on database %s, broker %s, mail %s; trusted proxies: %s",
             _scheme(settings.database_url), _scheme(settings.broker_url),
             _scheme(settings.mail_url.get_secret_value()), ", ".join(proxies) or "none")
    return app


def _scheme(url: str) -> str:
    # Only the kind of server: a URL may carry a password.
    return url.split(":", 1)[0]
