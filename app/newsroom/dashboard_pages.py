"""The dashboard: /admin."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from app.db import SessionDep
from app.newsroom import service
from app.newsroom.deps import ViewerDep, csrf_guard
from app.newsroom.edition_pages import alerts_for
from app.newsroom.web import render

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(csrf_guard)])
NOTICES = {"dismissed": "Alert dismissed."}


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, viewer: ViewerDep, session: SessionDep,
              notice: str | None = None) -> HTMLResponse:
    return render(request, "dashboard.html", {
        "title": "Dashboard", "board": service.dashboard(session, viewer.scope),
        "edition_alerts": alerts_for(session, viewer), "notice_text": NOTICES.get(notice or ""),
    })
