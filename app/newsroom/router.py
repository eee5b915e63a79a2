"""Everything the newsroom adds to the web application, in one call from `create_app`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import fastapi_offline
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.newsroom import (
    admin_pages,
    auth_pages,
    bounce_pages,
    dashboard_pages,
    edition_pages,
    issue_pages,
    send_pages,
    subscriber_pages,
)
from app.newsroom.deps import SignInRequired, Viewer, optional_viewer

# Swagger UI's files as the fastapi-offline package ships them: /docs needs no CDN.
SWAGGER_FILES = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_ASSETS = "/docs-assets"


# Every router of the newsroom (tests walk them to check each form's CSRF guard).
ROUTERS = (auth_pages.router, dashboard_pages.router, issue_pages.router, send_pages.router,
           subscriber_pages.router, admin_pages.router, bounce_pages.router,
           edition_pages.router)


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    if request.url.path.startswith("/admin/api/"):
        return Response('{"detail":"sign in first"}', status_code=401,
                        media_type="application/json")
    from urllib.parse import quote

    return RedirectResponse(f"/admin/sign-in?next={quote(exc.next_path, safe='/')}",
                            status_code=303)


def install(app: FastAPI) -> None:
    """Add the admin pages, the sign-in redirect and the offline API docs to `app`."""
    app.add_exception_handler(SignInRequired, _sign_in_required)
    for router in ROUTERS:
        app.include_router(router)
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_FILES), name="docs-assets")
    _media(app)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="Missive API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/", include_in_schema=False)
    def root(viewer: Annotated[Viewer | None, Depends(optional_viewer)]) -> Response:
        return RedirectResponse("/admin" if viewer else "/admin/sign-in", status_code=303)


def _media(app: FastAPI) -> None:
    from fastapi.responses import FileResponse

    from app.errors import NotFound
    from app.newsroom import media

    @app.get("/media/{name}", include_in_schema=False)
    def media_file(name: str) -> FileResponse:
        """An uploaded image, as readers' mail clients fetch it."""
        path = media.image_path(name)
        if path is None:
            raise NotFound("no such image")
        return FileResponse(path, media_type=media.CONTENT_TYPES[path.suffix[1:]], headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        })
