"""Admins only: users (with their roles and newsletter scopes), API tokens, newsletter settings."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from app.auth import service as auth
from app.config import get_settings
from app.db import DbId, SessionDep
from app.errors import AppError
from app.newsletters import service as newsletters
from app.newsletters.schemas import NewsletterCreate, NewsletterUpdate
from app.newsroom import accounts, queries
from app.newsroom.deps import AdminDep, Viewer, csrf_guard
from app.newsroom.web import render, see_other

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(csrf_guard)])

NOTICES = {"saved": "Saved.", "revoked": "Token revoked.", "deleted": "User removed.",
           "created": "Newsletter created."}
NEWSLETTER_FIELDS = ("name", "description", "from_name", "from_email", "reply_to", "footer",
                     "postal_address", "cadence", "cadence_anchor", "feed_url", "feed_drafts",
                     "feed_draft_hours_before")
_ADDRESS_SEPARATORS = re.compile(r"[\s,;]+")


# --- users and tokens -------------------------------------------------------------------------


def _users_page(request: Request, session: SessionDep, *, notice: str | None = None,
                shown: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                values: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    users = accounts.list_users(session)
    return render(request, "users.html", {
        "title": "Users and API tokens", "users": users,
        "scopes": {u.id: accounts.scope_ids(session, u.id) for u in users},
        "tokens": accounts.list_tokens(session), "newsletters": queries.newsletters(session, None),
        "notice_text": NOTICES.get(notice or ""), "shown": shown or {}, "errors": errors or {},
        "values": values or {},
    }, status_code=status_code)


@router.get("/users", response_class=HTMLResponse)
def users(request: Request, viewer: AdminDep, session: SessionDep,
          notice: str | None = None) -> HTMLResponse:
    return _users_page(request, session, notice=notice)


async def _newsletter_ids(request: Request) -> list[int]:
    form = await request.form()
    return [int(v) for v in form.getlist("newsletters") if isinstance(v, str) and v.isdigit()
            and len(v) < 10]


NewsletterIds = Annotated[list[int], Depends(_newsletter_ids)]


def _sign_in_link(token: str) -> str:
    return f"{get_settings().base_url}/admin/sign-in/{token}"


@router.post("/users", response_class=HTMLResponse)
def create_user(request: Request, viewer: AdminDep, session: SessionDep, ids: NewsletterIds,
                email: Annotated[str, Form(max_length=254)] = "",
                role: Annotated[str, Form(max_length=16)] = "editor") -> Response:
    try:
        with session.begin_nested():
            user = accounts.create_user(session, email=email, role=role, newsletter_ids=ids)
            link = accounts.issue_sign_in_token(session, user)
    except AppError as exc:
        return _users_page(request, session, errors={"email": str(exc.detail)},
                           values={"email": email, "role": role}, status_code=exc.status_code)
    return _users_page(request, session, shown={
        "what": f"One-time sign-in link for {user.email} (shown once; valid "
                f"{accounts.SIGN_IN_LINK_HOURS} hours)", "value": _sign_in_link(link)})


def _other_user(viewer: Viewer, user_id: int) -> None:
    if user_id == viewer.user.id:
        raise AppError("Use your account page to change your own account.", 409)


@router.post("/users/{user_id}", response_class=HTMLResponse)
def update_user(viewer: AdminDep, session: SessionDep, user_id: DbId, ids: NewsletterIds,
                role: Annotated[str, Form(max_length=16)] = "editor") -> Response:
    _other_user(viewer, user_id)
    user = accounts.get_user(session, user_id)
    accounts.set_role(session, user, role)
    accounts.set_scope(session, user, ids)
    # A narrower role or scope applies at once: the user signs in again.
    accounts.end_sessions(session, user.id)
    return see_other("/admin/users?notice=saved")


@router.post("/users/{user_id}/sign-in-link", response_class=HTMLResponse)
def new_link(request: Request, viewer: AdminDep, session: SessionDep,
             user_id: DbId) -> Response:
    user = accounts.get_user(session, user_id)
    link = accounts.issue_sign_in_token(session, user)
    return _users_page(request, session, shown={
        "what": f"One-time sign-in link for {user.email} (shown once)",
        "value": _sign_in_link(link)})


@router.post("/users/{user_id}/delete")
def delete_user(viewer: AdminDep, session: SessionDep, user_id: DbId) -> Response:
    _other_user(viewer, user_id)
    accounts.delete_user(session, user_id)
    return see_other("/admin/users?notice=deleted")


@router.post("/tokens", response_class=HTMLResponse)
def create_token(request: Request, viewer: AdminDep, session: SessionDep,
                 name: Annotated[str, Form(max_length=100)] = "",
                 role: Annotated[str, Form(max_length=16)] = "editor") -> Response:
    try:
        with session.begin_nested():
            token = auth.create_token(session, name=name, role=role)
    except AppError as exc:
        return _users_page(request, session, errors={"token_name": str(exc.detail)},
                           values={"token_name": name}, status_code=exc.status_code)
    return _users_page(request, session, shown={
        "what": f"API token {name.strip()} (shown once: copy it now)", "value": token})


@router.post("/tokens/{token_id}/revoke")
def revoke_token(viewer: AdminDep, session: SessionDep, token_id: DbId) -> Response:
    accounts.revoke_token(session, token_id)
    return see_other("/admin/users?notice=revoked")


# --- newsletter settings ----------------------------------------------------------------------


def _field_errors(exc: ValidationError) -> dict[str, str]:
    out = {}
    for e in exc.errors(include_url=False, include_input=False):
        name = str(e["loc"][0]) if e["loc"] else ""
        out[name] = e["msg"].removeprefix("Value error, ")
    return out


async def _newsletter_form(request: Request) -> dict[str, Any]:
    form = await request.form()
    values: dict[str, Any] = {}
    for name in (*NEWSLETTER_FIELDS, "slug"):
        value = form.get(name)
        if isinstance(value, str):
            values[name] = value
    if "reply_to" in values and not values["reply_to"].strip():
        values["reply_to"] = None
    if not values.get("feed_draft_hours_before", "x").strip():
        del values["feed_draft_hours_before"]  # left empty: keep it as it is (or the default)
    emails = form.get("editor_emails")
    if isinstance(emails, str):
        values["editor_emails"] = [a for a in _ADDRESS_SEPARATORS.split(emails) if a]
    if "cadence_anchor" in values:
        anchor = values["cadence_anchor"].strip()
        values["cadence_anchor"] = (anchor + ":00+00:00" if len(anchor) == 16 else anchor
                                    ) if anchor else None
    return values


NewsletterForm = Annotated[dict[str, Any], Depends(_newsletter_form)]


def _settings_page(request: Request, session: SessionDep, slug: str | None, *,
                   values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                   notice: str | None = None, status_code: int = 200) -> HTMLResponse:
    newsletter = newsletters.get_by_slug(session, slug) if slug else None
    base = get_settings().base_url
    return render(request, "newsletter.html", {
        "title": newsletter.name if newsletter else "New newsletter", "newsletter": newsletter,
        "values": values or {}, "errors": errors or {}, "base_url": base,
        "notice_text": NOTICES.get(notice or ""),
    }, status_code=status_code)


@router.get("/newsletters", response_class=HTMLResponse)
def list_newsletters(request: Request, viewer: AdminDep, session: SessionDep) -> HTMLResponse:
    return render(request, "newsletters.html", {
        "title": "Newsletters", "newsletters": queries.newsletters(session, None)})


@router.get("/newsletters/new", response_class=HTMLResponse)
def new_newsletter(request: Request, viewer: AdminDep, session: SessionDep) -> HTMLResponse:
    return _settings_page(request, session, None)


@router.post("/newsletters/new", response_class=HTMLResponse)
def create_newsletter(request: Request, viewer: AdminDep, session: SessionDep,
                      values: NewsletterForm) -> Response:
    try:
        data = NewsletterCreate.model_validate(values)
        with session.begin_nested():
            created = newsletters.create(session, data)
    except ValidationError as exc:
        return _settings_page(request, session, None, values=values,
                              errors=_field_errors(exc), status_code=422)
    except AppError as exc:
        return _settings_page(request, session, None, values=values,
                              errors={"": str(exc.detail)}, status_code=exc.status_code)
    return see_other(f"/admin/newsletters/{created.slug}?notice=created")


@router.get("/newsletters/{slug}", response_class=HTMLResponse)
def edit_newsletter(request: Request, viewer: AdminDep, session: SessionDep, slug: str,
                    notice: str | None = None) -> HTMLResponse:
    return _settings_page(request, session, slug, notice=notice)


@router.post("/newsletters/{slug}", response_class=HTMLResponse)
def save_newsletter(request: Request, viewer: AdminDep, session: SessionDep, slug: str,
                    values: NewsletterForm) -> Response:
    values.pop("slug", None)
    try:
        data = NewsletterUpdate.model_validate(values)
        with session.begin_nested():
            newsletters.update(session, slug, data)
    except ValidationError as exc:
        return _settings_page(request, session, slug, values=values,
                              errors=_field_errors(exc), status_code=422)
    except AppError as exc:
        if exc.status_code == 404:
            raise
        return _settings_page(request, session, slug, values=values,
                              errors={"": str(exc.detail)}, status_code=exc.status_code)
    return see_other(f"/admin/newsletters/{slug}?notice=saved")
