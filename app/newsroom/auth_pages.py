"""Sign-in, one-time sign-in links, sign-out and the password page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse

from app.db import SessionDep
from app.errors import AppError, Invalid
from app.newsroom import accounts
from app.newsroom.deps import (
    Viewer,
    ViewerDep,
    clear_session_cookie,
    csrf_guard,
    login_csrf_value,
    optional_viewer,
    set_login_csrf,
    set_session_cookie,
)
from app.newsroom.web import render, see_other
from app.ratelimit import hit

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(csrf_guard)])

# Attempts per client address and per account address before sign-in answers 429 for a while.
SIGN_IN_PER_IP = (30, 900)
SIGN_IN_PER_ACCOUNT = (8, 900)


def _safe_next(target: str | None) -> str:
    # Only a path inside the admin: never an open redirect to another site.
    if target and target.startswith("/admin") and "//" not in target and "\\" not in target:
        return target
    return "/admin"


def _sign_in_page(request: Request, *, email: str = "", error: str | None = None,
                  next_path: str = "/admin", status_code: int = 200) -> HTMLResponse:
    token = login_csrf_value(request)
    response = render(request, "sign_in.html", {
        "title": "Sign in", "email": email, "error": error, "next": next_path,
        "login_csrf": token,
    }, status_code=status_code)
    set_login_csrf(response, token)
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, viewer: Annotated[Viewer | None, Depends(optional_viewer)],
                 next: str | None = None) -> Response:  # noqa: A002
    if viewer is not None:
        return see_other(_safe_next(next))
    return _sign_in_page(request, next_path=_safe_next(next))


@router.post("/sign-in")
def sign_in(request: Request, session: SessionDep, email: Annotated[str, Form(max_length=254)] = "",
            password: Annotated[str, Form(max_length=accounts.MAX_PASSWORD)] = "",
            next: Annotated[str, Form(max_length=500)] = "/admin") -> Response:  # noqa: A002
    ip = request.client.host if request.client else "unknown"
    email = email.strip()
    if not (hit(f"admin-sign-in-ip:{ip}", limit=SIGN_IN_PER_IP[0], per_seconds=SIGN_IN_PER_IP[1])
            and hit(f"admin-sign-in:{email.lower()}", limit=SIGN_IN_PER_ACCOUNT[0],
                    per_seconds=SIGN_IN_PER_ACCOUNT[1])):
        return _sign_in_page(request, email=email, next_path=_safe_next(next), status_code=429,
                             error="Too many attempts. Wait a quarter of an hour and try again.")
    if not email or not password:
        return _sign_in_page(request, email=email, next_path=_safe_next(next), status_code=422,
                             error="Please enter your email address and your password.")
    user = accounts.authenticate(session, email, password)
    if user is None:
        return _sign_in_page(request, email=email, next_path=_safe_next(next), status_code=401,
                             error="That email address and password do not match an account.")
    _, token = accounts.start_session(session, user,
                                      user_agent=request.headers.get("user-agent", ""))
    response = see_other(_safe_next(next))
    set_session_cookie(response, token)
    return response


@router.get("/sign-in/{token}", response_class=HTMLResponse)
def sign_in_link(request: Request, token: str) -> Response:
    # A GET changes nothing: mail scanners open links. The button below uses the link.
    value = login_csrf_value(request)
    response = render(request, "sign_in_link.html", {"title": "Sign in", "token": token,
                                                     "login_csrf": value})
    set_login_csrf(response, value)
    return response


@router.post("/sign-in/{token}")
def use_sign_in_link(request: Request, token: str, session: SessionDep) -> Response:
    user = accounts.redeem_sign_in_token(session, token)
    if user is None:
        raise AppError("This sign-in link has been used or has expired. "
                       "Ask an admin for a new one, or sign in with your password.", 410)
    _, cookie = accounts.start_session(session, user,
                                       user_agent=request.headers.get("user-agent", ""))
    response = see_other("/admin/account" if user.password_hash is None else "/admin")
    set_session_cookie(response, cookie)
    return response


@router.post("/sign-out")
def sign_out(viewer: ViewerDep, session: SessionDep) -> Response:
    accounts.end_session(session, viewer.session.id)
    response = see_other("/admin/sign-in")
    clear_session_cookie(response)
    return response


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, viewer: ViewerDep, notice: str | None = None) -> Response:
    return render(request, "account.html", {"title": "Your account", "errors": {},
                                            "notice": notice})


@router.post("/account/password")
def change_password(
    request: Request, viewer: ViewerDep, session: SessionDep,
    current: Annotated[str, Form(max_length=accounts.MAX_PASSWORD)] = "",
    new: Annotated[str, Form(max_length=accounts.MAX_PASSWORD)] = "",
    confirm: Annotated[str, Form(max_length=accounts.MAX_PASSWORD)] = "",
) -> Response:
    errors: dict[str, str] = {}
    if new != confirm:
        errors["confirm"] = "The two new passwords differ."
    else:
        try:
            accounts.change_password(session, viewer.user, current=current, new=new,
                                     keep_session_id=viewer.session.id)
        except Invalid as exc:
            field = "current" if "current" in str(exc.detail) else "new"
            errors[field] = str(exc.detail)
    if errors:
        return render(request, "account.html", {"title": "Your account", "errors": errors,
                                                "notice": None}, status_code=422)
    return see_other("/admin/account?notice=password")
