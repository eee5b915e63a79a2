"""Bounces, complaints and the suppression list; lifting a suppression with a note."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.db import DbId, SessionDep
from app.errors import AppError
from app.newsroom import queries
from app.newsroom.deps import EditorDep, Forbidden, ViewerDep, csrf_guard
from app.newsroom.web import render, see_other
from app.subscribers import service as subscribers
from app.subscribers.service import Actor

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(csrf_guard)])

PAGE = 50


@router.get("/bounces", response_class=HTMLResponse)
def bounces(request: Request, viewer: ViewerDep, session: SessionDep,
            kind: Literal["", "hard", "soft", "policy", "complaint"] = "",
            email: Annotated[str, Query(max_length=254)] = "",
            before: Annotated[int | None, Query(ge=1)] = None,
            notice: str | None = None, error: str | None = None) -> HTMLResponse:
    rows, more = queries.bounce_page(session, viewer.scope, kind=kind or None,
                                     email=email or None, before_id=before, limit=PAGE)
    # Suppressions are per address, across newsletters: only unlimited users see the list.
    suppressed = ([] if viewer.scope is not None else
                  queries.suppression_page(session, email=email or None, before_id=None,
                                           limit=PAGE)[0])
    return render(request, "bounces.html", {
        "title": "Bounces and suppressions", "bounces": rows, "next_before": more,
        "kind": kind, "email": email, "suppressions": suppressed,
        "notice_text": "Suppression lifted." if notice == "lifted" else None,
        "error": error == "note",
    })


@router.post("/suppressions/{suppression_id}/lift")
def lift(request: Request, suppression_id: DbId, viewer: EditorDep, session: SessionDep,
         note: Annotated[str, Form(max_length=500)] = "") -> Response:
    if viewer.scope is not None:
        raise Forbidden("Only a user who sees every newsletter may lift a suppression.")
    actor = Actor(source=f"web:{viewer.user.email}",
                  ip=request.client.host if request.client else None)
    try:
        subscribers.lift_suppression(session, suppression_id, note=note, actor=actor)
    except AppError as exc:
        if exc.status_code == 404:
            raise
        return see_other("/admin/bounces?error=note")
    return see_other("/admin/bounces?notice=lifted")
