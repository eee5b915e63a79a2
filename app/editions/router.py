"""Editor API for editions: drafts from the feed, alerts, the PDF edition."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.auth.deps import TokenDep
from app.db import DbId, SessionDep
from app.editions import service

router = APIRouter(prefix="/api/v1", tags=["editions"])


@router.post("/newsletters/{slug}/drafts/from-feed", status_code=201, responses={
    200: {"description": "nothing new in the feed: `{\"created\": null, \"detail\"}`"},
    422: {"description": "no feed_url, or the feed was refused, unreachable or not a feed"},
})
def draft_from_feed(slug: str, session: SessionDep, _: TokenDep) -> JSONResponse:
    """Draft the next issue from the newsletter's feed: one story per item published since its
    last sent issue that no issue has used yet, newest first."""
    draft = service.draft_from_feed(session, slug)
    return JSONResponse(service.draft_answer(draft), status_code=201 if draft.issue else 200)


@router.get("/alerts")
def list_alerts(session: SessionDep, _: TokenDep, newsletter: str | None = None,
                include_dismissed: bool = False,
                limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """Alerts for the editors (drafts beat made from a feed, and why one was not made)."""
    return {"items": service.list_alerts(session, newsletter=newsletter,
                                         include_dismissed=include_dismissed, limit=limit)}


@router.post("/alerts/{alert_id}/dismiss")
def dismiss_alert(alert_id: DbId, session: SessionDep, _: TokenDep) -> dict[str, Any]:
    record = service.dismiss_alert(session, alert_id)
    return {"id": record.id, "dismissed_at": record.dismissed_at}
