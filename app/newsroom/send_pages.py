"""Sends in the newsroom: the list, a page per send with live progress, and its controls."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import Field

from app.bounces import service as bounces
from app.db import DbId, SessionDep
from app.errors import Invalid
from app.newsroom import queries, service
from app.newsroom.deps import EditorDep, Viewer, ViewerDep, csrf_guard
from app.newsroom.web import render, see_other
from app.sending import service as sending
from app.sending.models import SEND_STATUSES, Send

router = APIRouter(prefix="/admin/sends", include_in_schema=False,
                   dependencies=[Depends(csrf_guard)])

PAGE = 50
NOTICES = {
    "paused": "The send is paused.", "resumed": "The send goes on.",
    "cancelled": "The send is cancelled: readers not yet mailed are skipped.",
    "acknowledged": "Complaints acknowledged: the newsletter may send again.",
    "unknown-delivered": "Marked delivered: they count as sent.",
    "unknown-resent": "Sent again: the workers mail them now.",
}


def _send(session: SessionDep, viewer: Viewer, send_id: int) -> Send:
    send = sending.get(session, send_id)
    viewer.require_newsletter(send.issue.newsletter_id)
    return send


@router.get("", response_class=HTMLResponse)
def list_sends(request: Request, viewer: ViewerDep, session: SessionDep,
               status: Annotated[Literal["", "scheduled", "running", "paused", "cancelled",
                                         "done"], Query()] = "",
               before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> HTMLResponse:
    rows, more = queries.send_page(session, viewer.scope, status=status or None,
                                   before_id=before, limit=PAGE)
    return render(request, "sends.html", {
        "title": "Sends", "sends": [(s, service.progress(session, s)) for s in rows],
        "next_before": more, "status": status, "statuses": SEND_STATUSES,
    })


@router.get("/{send_id}", response_class=HTMLResponse)
def show_send(request: Request, send_id: DbId, viewer: ViewerDep, session: SessionDep,
              notice: str | None = None,
              unknown_after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0) -> HTMLResponse:
    send = _send(session, viewer, send_id)
    p = service.progress(session, send)
    unknown = (sending.unknown_deliveries(session, send.id, cursor=unknown_after, limit=PAGE)
               if p["unknown"] or unknown_after else {"items": [], "next_cursor": None})
    return render(request, "send.html", {
        "title": f"Send {send.id}", "send": send, "p": p, "unknown_rows": unknown["items"],
        "unknown_next": unknown["next_cursor"], "unknown_after": unknown_after,
        "bounces": queries.bounces_of_send(session, send.id),
        "blocked_here": send.issue.newsletter.sending_blocked_by == send.id,
        "notice_text": NOTICES.get(notice or ""),
    })


@router.get("/{send_id}/progress.json")
def progress(send_id: DbId, viewer: ViewerDep, session: SessionDep) -> JSONResponse:
    """What the send page's script polls."""
    send = _send(session, viewer, send_id)
    return JSONResponse(jsonable_encoder(service.progress(session, send)),
                        headers={"Cache-Control": "no-store"})


def _steer(session: SessionDep, viewer: Viewer, send_id: int, action: str) -> Response:
    send = _send(session, viewer, send_id)
    if action == "pause":
        sending.pause(session, send.id)
    elif action == "resume":
        sending.resume(session, send.id)
    elif action == "cancel":
        sending.cancel(session, send.id)
        if session.get(Send, send_id) is None:
            # Nothing had gone out: the send is gone and the issue is a draft again.
            return see_other(f"/admin/issues/{send.issue_id}")
    else:
        bounces.acknowledge_complaints(session, send.id)
    done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}.get(
        action, "acknowledged")
    return see_other(f"/admin/sends/{send_id}?notice={done}")


@router.post("/{send_id}/pause")
def pause(send_id: DbId, viewer: EditorDep, session: SessionDep) -> Response:
    return _steer(session, viewer, send_id, "pause")


@router.post("/{send_id}/resume")
def resume(send_id: DbId, viewer: EditorDep, session: SessionDep) -> Response:
    return _steer(session, viewer, send_id, "resume")


@router.post("/{send_id}/cancel")
def cancel(send_id: DbId, viewer: EditorDep, session: SessionDep) -> Response:
    return _steer(session, viewer, send_id, "cancel")


@router.post("/{send_id}/acknowledge-complaints")
def acknowledge(send_id: DbId, viewer: EditorDep, session: SessionDep) -> Response:
    return _steer(session, viewer, send_id, "acknowledge")




UnknownIds = Annotated[list[Annotated[int, Field(ge=1, le=2**63 - 1)]], Form(max_length=1000)]
EveryUnknown = Annotated[bool, Form(alias="all")]


def _settle_unknown(session: SessionDep, viewer: Viewer, send_id: int, ids: list[int],
                    every: bool, *, resend: bool) -> Response:
    """Mark delivered or resend the ticked `unknown` rows (or all of them), through the service
    the API's `…/unknown/mark-delivered` and `…/unknown/resend` call."""
    send = _send(session, viewer, send_id)
    if not every and not ids:
        raise Invalid("Tick at least one reader, or use the buttons for all of them.")
    settle = sending.resend_unknown if resend else sending.mark_unknown_delivered
    settle(session, send.id, None if every else ids, actor=f"web:{viewer.user.email}")
    done = "unknown-resent" if resend else "unknown-delivered"
    return see_other(f"/admin/sends/{send_id}?notice={done}#unknown-h")


@router.post("/{send_id}/unknown/mark-delivered")
def mark_unknown_delivered(send_id: DbId, viewer: EditorDep, session: SessionDep,
                           ids: UnknownIds = [],  # noqa: B006 (FastAPI copies defaults)
                           every: EveryUnknown = False) -> Response:
    return _settle_unknown(session, viewer, send_id, ids, every, resend=False)


@router.post("/{send_id}/unknown/resend")
def resend_unknown(send_id: DbId, viewer: EditorDep, session: SessionDep,
                   ids: UnknownIds = [],  # noqa: B006 (FastAPI copies defaults)
                   every: EveryUnknown = False) -> Response:
    return _settle_unknown(session, viewer, send_id, ids, every, resend=True)
