"""Public pages: the sign-up form, the confirmation link and the unsubscribe link.

No login, HTML by default, JSON where asked. Every state-changing action is a POST: mail link
scanners fetch GETs, so a GET only shows a page with a button.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from app.db import SessionDep
from app.errors import AppError, Invalid, NotFound
from app.newsletters import service as newsletters
from app.newsletters.models import Newsletter
from app.signup import service
from app.subscribers import unsubscribe as leaving
from app.subscribers.service import Actor
from app.subscribers.unsubscribe import Outcome, TokenView
from app.web import pages

router = APIRouter(tags=["public"])

MAX_FORM_BYTES = 16 * 1024
HONEYPOT = "website"
NO_NEWSLETTER = ("There is no newsletter at this address. Please check the link, or ask the "
                 "publisher for their sign-up page.")
CHECK_INBOX = "Thanks! If this address can be subscribed, a confirmation link is on its way."
FORM_UNREADABLE = "The form could not be read. Please go back and try again."


@dataclass
class SignupInput:
    wants_json: bool
    email: Any
    name: Any
    honeypot: Any


async def signup_input(request: Request) -> SignupInput:
    """The posted form or JSON object, bounded in size."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise AppError("The form is too large to send. Please shorten what you typed "
                           "and try again.", 413)
    if ctype == "application/json":
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise Invalid("The request body is not valid JSON.") from exc
        if not isinstance(data, dict):
            raise Invalid("The request body must be a JSON object with an email field.")
        return SignupInput(True, data.get("email"), data.get("name"), data.get(HONEYPOT))
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        from urllib.parse import parse_qs

        if ctype == "multipart/form-data":
            form = await _multipart(request, body)
        else:
            try:
                parsed = parse_qs(body.decode("utf-8"), max_num_fields=20)
            except (UnicodeDecodeError, ValueError) as exc:
                raise Invalid(FORM_UNREADABLE) from exc
            form = {k: v[-1] for k, v in parsed.items()}
        wants_json = "application/json" in request.headers.get("accept", "")
        return SignupInput(wants_json, form.get("email"), form.get("name"), form.get(HONEYPOT))
    raise AppError("Please send the sign-up as a web form or a JSON object.", 415)


async def _multipart(request: Request, body: bytes) -> dict[str, Any]:
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream() -> Any:
        yield body

    try:
        form = await MultiPartParser(Headers(scope=request.scope), stream(), max_files=0,
                                     max_fields=20).parse()
    except MultiPartException as exc:
        raise Invalid(FORM_UNREADABLE) from exc
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _actor(request: Request, source: str) -> Actor:
    return Actor(
        source=source,
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent", "")[:500],
    )


def _newsletter(session: SessionDep, slug: str) -> Newsletter:
    try:
        return newsletters.get_by_slug(session, slug)
    except NotFound as exc:
        raise NotFound(NO_NEWSLETTER) from exc


def way_on(newsletter: Newsletter | None) -> list[dict[str, str]]:
    """Where a reader may go from a page that ends what they came for: the newsletter's
    archive and, when it names a feed of theirs, the publisher's site."""
    if newsletter is None:
        return []
    links = [{"href": f"/archive/{newsletter.slug}",
              "text": f"Read past issues of {newsletter.name}"}]
    site = publisher_site(newsletter)
    if site:
        links.append({"href": site, "text": f"Go to {urlsplit(site).netloc}"})
    return links


def publisher_site(newsletter: Newsletter) -> str | None:
    """The publisher's site: the home of the feed the newsletter drafts from, if any."""
    parts = urlsplit(newsletter.feed_url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}/"


def _form_page(request: Request, newsletter: Newsletter, *, errors: dict[str, str] | None = None,
               values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    errors = errors or {}
    return pages().TemplateResponse(
        request, "subscribe.html",
        {"newsletter": newsletter, "errors": errors, "values": values or {},
         # The form's own problem (a rate limit): shown above it, tied to no field.
         "general": errors.get(""), "first_invalid": next(
             (f for f in ("email", "name") if f in errors), None)},
        status_code=status_code,
    )


@router.get("/subscribe/{slug}", response_class=HTMLResponse)
def signup_form(slug: str, request: Request, session: SessionDep) -> Response:
    return _form_page(request, _newsletter(session, slug))


@router.post("/subscribe/{slug}", response_model=None)
def signup(
    slug: str,
    request: Request,
    session: SessionDep,
    data: Annotated[SignupInput, Depends(signup_input)],
) -> Response:
    newsletter = _newsletter(session, slug)
    values = {"email": data.email if isinstance(data.email, str) else "",
              "name": data.name if isinstance(data.name, str) else ""}
    problems = service.reader_problems(data.email, data.name)
    if problems:
        if data.wants_json:
            return JSONResponse({"detail": " ".join(problems.values()), "fields": problems},
                                status_code=422)
        return _form_page(request, newsletter, errors=problems, values=values,
                          status_code=422)
    # What differs between a new and a known address is done after the answer has gone
    # (a background task), so neither the answer nor its timing tells them apart.
    background = None
    try:
        if not data.honeypot:  # a bot filled the hidden field: answer as usual, do nothing
            accepted = service.accept_sign_up(session, slug=slug, email=data.email,
                                              name=data.name,
                                              actor=_actor(request, f"form:{slug}"))
            background = BackgroundTask(service.record_sign_up_apart, accepted)
    except AppError as exc:
        if data.wants_json:
            raise
        session.rollback()
        return _form_page(request, newsletter, errors={"": str(exc.detail)}, values=values,
                          status_code=exc.status_code)
    if data.wants_json:
        return JSONResponse({"status": "accepted", "detail": CHECK_INBOX}, status_code=202,
                            background=background)
    return pages().TemplateResponse(
        request, "message.html",
        {"newsletter": newsletter, "title": "Check your inbox", "message": CHECK_INBOX,
         "links": way_on(newsletter)},
        background=background,
    )


_CONFIRM_PAGES = {
    Outcome.EXPIRED: ("This link has expired", "Confirmation links last a few days. "
                      "Sign up again and we will send you a fresh one.", 410),
    Outcome.INVALID: ("This link is not valid", "It may have been cut short by your mail "
                      "program. Copy the whole link from the email, or sign up again.", 404),
    Outcome.STALE: ("This link can no longer be used", "Sign up again to receive a new "
                    "confirmation link.", 409),
    Outcome.ALREADY: ("You are already subscribed", "Nothing more to do: the next issue will "
                      "reach you.", 200),
}


def _token_page(request: Request, view: TokenView, pages_by: dict[Outcome, Any],
                confirmed: tuple[str, str]) -> Response:
    title, message, code = pages_by.get(view.outcome, (*confirmed, 200))
    links = way_on(view.newsletter)
    if view.outcome in (Outcome.STALE, Outcome.EXPIRED) and view.newsletter is not None:
        links.insert(0, {"href": f"/subscribe/{view.newsletter.slug}", "text": "Sign up again"})
    return pages().TemplateResponse(
        request, "message.html",
        {"newsletter": view.newsletter, "title": title, "message": message, "links": links},
        status_code=code,
    )


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(token: str, request: Request, session: SessionDep) -> Response:
    view = service.check_confirm(session, token)
    if view.outcome is not Outcome.CONFIRMED:
        return _token_page(request, view, _CONFIRM_PAGES, ("", ""))
    return pages().TemplateResponse(
        request, "confirm.html", {"newsletter": view.newsletter, "token": token}
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(token: str, request: Request, session: SessionDep) -> Response:
    view = service.confirm(session, token, _actor(request, "confirm-link"))
    return _token_page(request, view, _CONFIRM_PAGES, (
        "Subscription confirmed", "Thank you. A welcome note is on its way to your inbox."))


_UNSUB_INVALID = ("This link is not valid", "Copy the whole link from the email, or reply to "
                  "the newsletter and we will take you off the list.")


# The unsubscribe links of test copies and previews (app/sending/test_sends.py, issue preview).
SAMPLE_TOKENS = ("test-send-sample", "preview-sample")


def _unsub_page(request: Request, token: str, view: TokenView, *, state: str,
                status_code: int = 200) -> Response:
    if view.outcome is Outcome.TEST:
        name = view.newsletter.name if view.newsletter else "the newsletter"
        return pages().TemplateResponse(
            request, "message.html",
            {"newsletter": view.newsletter, "title": "This is a test copy",
             "message": f"This link came in a test copy of {name}, so nothing was changed. "
                        "In a reader's copy it leads to the unsubscribe page, and mail "
                        "programs' one-click unsubscribe takes the reader off the list at "
                        "once.",
             "links": way_on(view.newsletter)},
        )
    if view.outcome is Outcome.INVALID and token in SAMPLE_TOKENS:
        return pages().TemplateResponse(request, "message.html", {
            "newsletter": None, "title": "This is a test copy",
            "message": "In a reader's copy of the issue, this link takes them off the list. "
                       "Nobody was unsubscribed."})
    if view.outcome is Outcome.INVALID:
        title, message = _UNSUB_INVALID
        return pages().TemplateResponse(
            request, "message.html", {"newsletter": None, "title": title, "message": message},
            status_code=404,
        )
    return pages().TemplateResponse(
        request, "unsubscribe.html",
        {"newsletter": view.newsletter, "token": token, "state": state,
         "links": [] if state == "ask" else way_on(view.newsletter)},
        status_code=status_code,
    )


@router.head("/u/{token}", include_in_schema=False)
@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, session: SessionDep) -> Response:
    view = service.check_unsubscribe(session, token)
    state = "ask"
    if view.outcome is Outcome.ALREADY:
        state = "done" if service.check_undo_open(session, token) else "gone"
    return _unsub_page(request, token, view, state=state)


@router.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, request: Request, session: SessionDep) -> Response:
    # Also the RFC 8058 one-click POST: no cookie, no CSRF token, answered 200 with no redirect.
    view = leaving.unsubscribe(session, token, _actor(request, "unsubscribe-link"))
    return _unsub_page(request, token, view, state="done")


@router.post("/u/{token}/undo", response_class=HTMLResponse)
def resubscribe(token: str, request: Request, session: SessionDep) -> Response:
    view = service.resubscribe(session, token, _actor(request, "unsubscribe-undo"))
    if view.outcome is Outcome.EXPIRED:
        return _unsub_page(request, token, view, state="gone", status_code=410)
    if view.outcome is Outcome.STALE:
        return pages().TemplateResponse(
            request, "message.html",
            {"newsletter": view.newsletter, "title": "We cannot mail this address",
             "message": "Mail to this address was refused before, so it stays off the list.",
             "links": way_on(view.newsletter)},
            status_code=409,
        )
    return _unsub_page(request, token, view, state="undone")


@router.post("/u/{token}/all", response_class=HTMLResponse)
def unsubscribe_all(token: str, request: Request, session: SessionDep) -> Response:
    view = leaving.unsubscribe_everywhere(session, token, _actor(request, "unsubscribe-all"))
    return _unsub_page(request, token, view, state="all")


def not_found_page(request: Request, exc: NotFound) -> Response:
    return pages().TemplateResponse(
        request, "message.html",
        {"newsletter": None, "title": "Page not found", "message": str(exc.detail)},
        status_code=404,
    )
