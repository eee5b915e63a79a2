"""Who is signed in, what they may do, and the guard on every state-changing request."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session

from app.auth.models import User
from app.config import get_settings
from app.db import SessionDep
from app.errors import AppError, NotFound
from app.newsletters import service as newsletters
from app.newsletters.models import Newsletter
from app.newsroom import accounts
from app.newsroom.models import UserSession
from app.security import TokenInvalid, sign, unsign

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}
CSRF_FIELD = "csrf_token"


class Forbidden(AppError):
    status_code = 403


class SignInRequired(Exception):
    """No signed-in user: pages answer with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def secure_cookies() -> bool:
    return get_settings().base_url.startswith("https://")


def session_cookie_name() -> str:
    # __Host- cookies must be Secure, host-only and for path /: a sibling subdomain cannot
    # plant or shadow one.
    return "__Host-missive_session" if secure_cookies() else "missive_session"


def login_csrf_cookie_name() -> str:
    return "__Host-missive_csrf" if secure_cookies() else "missive_csrf"


def set_session_cookie(response: Response, token: str) -> None:
    response.set_cookie(session_cookie_name(), sign("admin-session", token),
                        max_age=accounts.SESSION_DAYS * 86400, path="/", httponly=True,
                        secure=secure_cookies(), samesite="lax")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(session_cookie_name(), path="/", httponly=True,
                           secure=secure_cookies(), samesite="lax")


@dataclass
class Viewer:
    """The signed-in user of this request, with their session and newsletter scope."""

    user: User
    session: UserSession
    scope: frozenset[int] | None

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    def may(self, role: str) -> bool:
        return ROLE_RANK.get(self.user.role, -1) >= ROLE_RANK[role]

    def sees(self, newsletter_id: int) -> bool:
        return self.scope is None or newsletter_id in self.scope

    def require_newsletter(self, newsletter_id: int) -> None:
        """NotFound for a newsletter outside the user's scope: they learn nothing about it."""
        if not self.sees(newsletter_id):
            raise NotFound("there is nothing here")

    def newsletter(self, session: Session, slug: str) -> Newsletter:
        """The newsletter `slug`, NotFound alike whether it is missing or outside the scope."""
        found = newsletters.get_by_slug(session, slug)
        self.require_newsletter(found.id)
        return found


def _cookie_token(request: Request) -> str | None:
    raw = request.cookies.get(session_cookie_name())
    if not raw:
        return None
    try:
        token, _ = unsign("admin-session", raw,
                          max_age_seconds=accounts.SESSION_DAYS * 86400)
    except TokenInvalid:
        return None
    return token if isinstance(token, str) else None


def optional_viewer(request: Request, session: SessionDep) -> Viewer | None:
    token = _cookie_token(request)
    found = accounts.resume_session(session, token) if token else None
    if found is None:
        return None
    row, user = found
    viewer = Viewer(user=user, session=row, scope=accounts.scope_ids(session, user.id))
    request.state.viewer = viewer
    return viewer


def current_viewer(request: Request,
                   viewer: Annotated[Viewer | None, Depends(optional_viewer)]) -> Viewer:
    if viewer is None:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        raise SignInRequired(target if request.method in SAFE_METHODS else "/admin")
    return viewer


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def require(role: str) -> object:
    """A dependency refusing (403) a user below `role`."""

    def check(viewer: ViewerDep) -> Viewer:
        if not viewer.may(role):
            raise Forbidden(f"Your role ({viewer.user.role}) may not do this.")
        return viewer

    return Depends(check)


EditorDep = Annotated[Viewer, require("editor")]
AdminDep = Annotated[Viewer, require("admin")]


# --- cross-site request forgery ---------------------------------------------------------------


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _allowed_origins(request: Request) -> set[str]:
    # The public base URL, and the address this request came to (a browser sets Host to the
    # server it talks to, so a foreign page cannot make the two agree).
    allowed = {_origin_of(get_settings().base_url)}
    host = request.headers.get("host")
    if host:
        allowed.add(f"{request.url.scheme}://{host}".lower())
    return allowed


def check_origin(request: Request) -> None:
    """403 when the request says it comes from another site (Origin, else Referer)."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        origin = _origin_of(referer) if referer else None
    if origin is not None and origin.lower() not in _allowed_origins(request):
        raise Forbidden("This request came from another site and was refused.")


async def _posted_token(request: Request) -> str:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def csrf_guard(request: Request,
                     viewer: Annotated[Viewer | None, Depends(optional_viewer)]) -> None:
    """Every state-changing request: same origin and the session's CSRF token, or 403.

    Runs before the route's own dependencies, so a refused request changes nothing."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request)
    posted = await _posted_token(request)
    if viewer is not None:
        expected = viewer.csrf_token
    else:
        # Before sign-in there is no session: the form carries the value of a cookie set with
        # it (double submit), which another site can neither read nor set.
        expected = request.cookies.get(login_csrf_cookie_name(), "")
    if not expected or not posted or not hmac.compare_digest(posted, expected):
        raise Forbidden("The form had expired or was not sent from this site. "
                        "Go back, reload the page and try again.")


def login_csrf_value(request: Request) -> str:
    """The double-submit value for the sign-in forms: the browser's, or a new one."""
    value = request.cookies.get(login_csrf_cookie_name())
    if not value or len(value) > 100:
        value = secrets.token_urlsafe(24)
    return value


def set_login_csrf(response: Response, value: str) -> None:
    response.set_cookie(login_csrf_cookie_name(), value, path="/", httponly=True,
                        secure=secure_cookies(), samesite="strict")
