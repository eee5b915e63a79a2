"""Editor API for editions: drafts from the feed, alerts, the PDF edition."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from app.auth.deps import TokenDep
from app.db import DbId, SessionDep
from app.editions import service
from app.editions.pdf import PageSize
from app.issues import service as issues
from app.issues.router import PreviewAccess

router = APIRouter(prefix="/api/v1", tags=["editions"])
# Registered before the archive's /archive/{slug}/{number}, which would take "2.22.pdf".
public_router = APIRouter(tags=["archive"])
SizeParam = Annotated[PageSize, Query(description="paper: a4 (default) or letter")]


def _pdf(body: bytes, filename: str, cache: str) -> Response:
    return Response(body, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": cache,
        "X-Content-Type-Options": "nosniff",
    })


@router.get("/issues/{issue_id}/preview.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
def preview_pdf(issue_id: DbId, session: SessionDep, _: PreviewAccess, size: SizeParam = "a4"
                ) -> Response:
    """The PDF edition of any issue, a draft too (with the token, or the `key` of its
    preview_url)."""
    issue = issues.get(session, issue_id)
    return _pdf(service.issue_pdf(issue, page_size=size), service.pdf_filename(issue),
                "private, no-store")


@public_router.get("/archive/{slug}/{number}.pdf", response_class=Response,
                   responses={200: {"content": {"application/pdf": {}}}})
def archive_pdf(slug: str, number: str, session: SessionDep, size: SizeParam = "a4"
                ) -> Response:
    """The PDF edition of a sent issue; 404 until it is sent."""
    issue, body = service.archive_pdf(session, slug, number, page_size=size)
    return _pdf(body, service.pdf_filename(issue), "public, max-age=300")


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
