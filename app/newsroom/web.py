"""The newsroom's templates and the one way its pages are rendered."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from app.newsroom.deps import CSRF_FIELD, Viewer
from app.web import TEMPLATES_DIR


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


@lru_cache
def templates() -> Jinja2Templates:
    """Templates for the admin pages (autoescaped)."""
    t = Jinja2Templates(directory=str(TEMPLATES_DIR / "admin"))
    t.env.globals["csrf_field"] = CSRF_FIELD
    t.env.filters["when"] = _when
    return t


def render(request: Request, name: str, context: dict[str, Any], *,
           status_code: int = 200) -> HTMLResponse:
    """An admin page; the signed-in user and their CSRF token are in every template."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    ctx = {"viewer": viewer, "csrf_token": viewer.csrf_token if viewer else "", **context}
    return templates().TemplateResponse(
        request, name, ctx, status_code=status_code,
        # Pages show personal data: no shared cache keeps them.
        headers={"Cache-Control": "no-store"},
    )


def see_other(url: str) -> RedirectResponse:
    """After a POST, the browser goes on with a GET (no resubmission on reload)."""
    return RedirectResponse(url, status_code=303)
