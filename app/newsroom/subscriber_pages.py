"""Subscribers in the newsroom: search, a page each, add, edit, unsubscribe, CSV in and out.

The rules are `app.subscribers`' (the same service the API calls); a user limited to some
newsletters finds only their readers and sees only those subscriptions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from app.config import get_settings
from app.db import DbId, SessionDep, session_scope
from app.errors import AppError, Invalid, NotFound
from app.newsletters import service as newsletters
from app.newsroom import queries
from app.newsroom.deps import EditorDep, Viewer, ViewerDep, csrf_guard
from app.newsroom.web import render, see_other
from app.privacy import erasure
from app.subscribers import csvio, imports
from app.subscribers import service as subscribers
from app.subscribers.models import Subscriber
from app.subscribers.schemas import SubscriberCreate, SubscriberUpdate, SubscriptionIn
from app.subscribers.service import Actor

router = APIRouter(prefix="/admin/subscribers", include_in_schema=False,
                   dependencies=[Depends(csrf_guard)])

PAGE = 50
FILTER_STATUSES = ("active", "pending", "unsubscribed", "bounced", "complained", "manual")
NOTICES = {"saved": "Saved.", "added": "Subscriber added.", "unsubscribed": "Unsubscribed.",
           "erased": "The subscriber is erased. Their address stays suppressed, as a hash."}


def _actor(request: Request, viewer: Viewer) -> Actor:
    return Actor(source=f"web:{viewer.user.email}"[:200],
                 ip=request.client.host if request.client else None,
                 user_agent=request.headers.get("user-agent", "")[:500])



def _subscriber(session: SessionDep, viewer: Viewer, subscriber_id: int) -> Subscriber:
    subscriber = subscribers.get(session, subscriber_id)
    if viewer.scope is not None and not any(
            s.newsletter_id in viewer.scope for s in subscriber.subscriptions):
        raise NotFound(f"no subscriber {subscriber_id}")
    return subscriber


def _list_context(session: SessionDep, viewer: Viewer, *, newsletter: str, status: str, q: str,
                  cursor: str | None) -> dict[str, Any]:
    visible = queries.newsletters(session, viewer.scope)
    if viewer.scope is not None and not newsletter and visible:
        # A limited user always searches within one of their newsletters.
        newsletter = visible[0].slug
    if newsletter:
        viewer.newsletter(session, newsletter)
    page = subscribers.list_page(session, newsletter=newsletter or None, status=status or None,
                                 q=q or None, cursor=cursor, limit=PAGE)
    items = page.items
    if viewer.scope is not None:
        slugs = {n.slug for n in visible}
        for item in items:
            item.subscriptions = [s for s in item.subscriptions if s.newsletter in slugs]
    return {"title": "Subscribers", "items": items, "next_cursor": page.next_cursor,
            "newsletter": newsletter, "status": status, "q": q, "newsletters": visible,
            "statuses": FILTER_STATUSES, "imports": queries.recent_imports(session, viewer.scope)}


@router.get("", response_class=HTMLResponse)
def list_subscribers(
    request: Request, viewer: ViewerDep, session: SessionDep,
    newsletter: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[Literal["", "active", "pending", "unsubscribed", "bounced", "complained",
                              "manual"], Query()] = "",
    q: Annotated[str, Query(max_length=254)] = "",
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    notice: str | None = None,
) -> HTMLResponse:
    context = _list_context(session, viewer, newsletter=newsletter, status=status, q=q,
                            cursor=cursor)
    context["notice_text"] = NOTICES.get(notice or "")
    return render(request, "subscribers.html", context)


@router.get("/export")
def export(viewer: ViewerDep, session: SessionDep,
           newsletter: Annotated[str, Query(max_length=64)] = "") -> StreamingResponse:
    if viewer.scope is not None and not newsletter:
        raise Invalid("Choose one of your newsletters to export.")
    slug = viewer.newsletter(session, newsletter).slug if newsletter else None

    def rows() -> Any:
        with session_scope() as export_session:
            target = newsletters.get_by_slug(export_session, slug) if slug else None
            yield from csvio.export_rows(export_session, newsletter=target)

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="subscribers-{slug or "all"}.csv"',
        "Cache-Control": "no-store"})


@router.get("/new", response_class=HTMLResponse)
def new_subscriber(request: Request, viewer: EditorDep, session: SessionDep) -> HTMLResponse:
    return render(request, "subscriber_new.html", {
        "title": "Add a subscriber", "errors": {}, "values": {},
        "newsletters": queries.newsletters(session, viewer.scope)})


@router.post("/new", response_class=HTMLResponse)
def add_subscriber(
    request: Request, viewer: EditorDep, session: SessionDep,
    email: Annotated[str, Form(max_length=254)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    newsletter: Annotated[str, Form(max_length=64)] = "",
    status: Annotated[Literal["active", "pending"], Form()] = "active",
) -> Response:
    values = {"email": email, "name": name, "newsletter": newsletter, "status": status}
    errors: dict[str, str] = {}
    if not email.strip():
        errors["email"] = "Please enter an email address."
    try:
        viewer.newsletter(session, newsletter)
    except NotFound:
        errors["newsletter"] = "Please choose a newsletter."
    if not errors:
        try:
            with session.begin_nested():
                created = subscribers.create(session, SubscriberCreate(
                    email=email, name=name,
                    subscriptions=[SubscriptionIn(newsletter=newsletter, status=status)]),
                    _actor(request, viewer))
            return see_other(f"/admin/subscribers/{created.id}?notice=added")
        except AppError as exc:
            errors["email"] = str(exc.detail)
    return render(request, "subscriber_new.html", {
        "title": "Add a subscriber", "errors": errors, "values": values,
        "newsletters": queries.newsletters(session, viewer.scope)}, status_code=422)


@router.post("/import", response_class=HTMLResponse)
def import_csv(
    request: Request, viewer: EditorDep, session: SessionDep,
    file: Annotated[UploadFile, File()],
    newsletter: Annotated[str, Form(max_length=64)] = "",
    pending: Annotated[bool, Form()] = False,
) -> Response:
    """Store the file and hand it to a worker; the import page follows its progress."""
    target = viewer.newsletter(session, newsletter) if newsletter else None
    context = _list_context(session, viewer, newsletter="", status="", q="", cursor=None)
    if target is None:
        context["import_error"] = "Please choose the newsletter to import into."
        return render(request, "subscribers.html", context, status_code=422)
    if file.size is not None and file.size > get_settings().max_csv_bytes:
        context["import_error"] = "The file is too large."
        return render(request, "subscribers.html", context, status_code=413)
    try:
        with session.begin_nested():
            job = imports.start(session, file.file, newsletter=target,
                                filename=file.filename or "", pending=pending,
                                created_by=f"web:{viewer.user.email}")
    except AppError as exc:
        context["import_error"] = str(exc.detail)
        return render(request, "subscribers.html", context, status_code=exc.status_code)
    return see_other(f"/admin/subscribers/imports/{job.id}")


@router.get("/imports/{job_id}", response_class=HTMLResponse)
def show_import(request: Request, job_id: DbId, viewer: ViewerDep,
                session: SessionDep) -> HTMLResponse:
    """An import's progress while a worker runs it (the page refreshes itself), then its
    counts and every line that had a problem."""
    job = imports.get(session, job_id)
    viewer.require_newsletter(job.newsletter_id)
    percent = round(100 * job.bytes_done / job.size_bytes) if job.size_bytes else 100
    return render(request, "subscriber_import.html", {
        "title": f"Import into {job.newsletter.name}", "job": job,
        "finished": job.status in ("done", "failed"), "percent": min(percent, 100),
        "rows_done": job.created + job.updated + job.error_count})


@router.get("/{subscriber_id}", response_class=HTMLResponse)
def show_subscriber(request: Request, subscriber_id: DbId, viewer: ViewerDep,
                    session: SessionDep, notice: str | None = None) -> HTMLResponse:
    subscriber = _subscriber(session, viewer, subscriber_id)
    return _subscriber_page(request, session, viewer, subscriber, notice=notice)


def _subscriber_page(request: Request, session: SessionDep, viewer: Viewer,
                     subscriber: Subscriber, *, notice: str | None = None,
                     errors: dict[str, str] | None = None, status_code: int = 200
                     ) -> HTMLResponse:
    subscriptions = [s for s in sorted(subscriber.subscriptions, key=lambda s: s.newsletter_id)
                     if viewer.sees(s.newsletter_id)]
    return render(request, "subscriber.html", {
        "title": subscriber.email, "subscriber": subscriber, "subscriptions": subscriptions,
        "suppression": queries.suppression(session, subscriber.email_key),
        "consent": queries.consent_log(session, subscriber.id, viewer.scope),
        "bounces": queries.bounces_of(session, subscriber.id, subscriber.email_key),
        "deliveries": queries.deliveries_of(session, subscriber.id, viewer.scope),
        "errors": errors or {}, "notice_text": NOTICES.get(notice or ""),
    }, status_code=status_code)


@router.post("/{subscriber_id}", response_class=HTMLResponse)
def edit_subscriber(
    request: Request, subscriber_id: DbId, viewer: EditorDep, session: SessionDep,
    email: Annotated[str, Form(max_length=254)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    subscriber = _subscriber(session, viewer, subscriber_id)
    try:
        with session.begin_nested():
            subscribers.update(session, subscriber.id, SubscriberUpdate(
                email=email or None, name=name), _actor(request, viewer))
    except AppError as exc:
        session.expire_all()
        return _subscriber_page(request, session, viewer,
                                _subscriber(session, viewer, subscriber_id),
                                errors={"email": str(exc.detail)}, status_code=exc.status_code)
    return see_other(f"/admin/subscribers/{subscriber_id}?notice=saved")


@router.post("/{subscriber_id}/unsubscribe")
def unsubscribe(request: Request, subscriber_id: DbId, viewer: EditorDep, session: SessionDep,
                newsletter: Annotated[str, Form(max_length=64)] = "") -> Response:
    subscriber = _subscriber(session, viewer, subscriber_id)
    target = viewer.newsletter(session, newsletter)
    subscribers.set_status(session, subscriber, target, "unsubscribed", _actor(request, viewer))
    return see_other(f"/admin/subscribers/{subscriber_id}?notice=unsubscribed")


@router.get("/{subscriber_id}/erase", response_class=HTMLResponse)
def confirm_erase(request: Request, subscriber_id: DbId, viewer: EditorDep,
                  session: SessionDep) -> HTMLResponse:
    """The confirmation step before an erasure, which cannot be undone."""
    subscriber = _subscriber(session, viewer, subscriber_id)
    return render(request, "subscriber_erase.html", {
        "title": f"Erase {subscriber.email}?", "subscriber": subscriber})


@router.post("/{subscriber_id}/erase")
def erase(request: Request, subscriber_id: DbId, viewer: EditorDep,
          session: SessionDep) -> Response:
    subscriber = _subscriber(session, viewer, subscriber_id)
    erasure.erase(session, subscriber.id, _actor(request, viewer))
    return see_other("/admin/subscribers?notice=erased")
