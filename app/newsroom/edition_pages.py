"""The newsroom side of editions: a draft from the newsletter's feed at the press of a button,
the PDF edition of any issue, and the alerts the feed drafts leave for the editors.

The rules live in `app.editions.service`; these routes add the newsroom's roles and scopes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.db import DbId, SessionDep
from app.editions import service as editions
from app.editions.models import EditionAlert
from app.editions.pdf import PageSize
from app.errors import AppError, NotFound
from app.newsroom import queries
from app.newsroom.deps import EditorDep, Viewer, ViewerDep, csrf_guard
from app.newsroom.issue_pages import _issue, issues_page
from app.newsroom.web import see_other

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(csrf_guard)])

MAX_ALERTS = 50


@router.post("/newsletters/{slug}/draft-from-feed", response_class=HTMLResponse)
def draft_from_feed(request: Request, slug: str, viewer: EditorDep,
                    session: SessionDep) -> Response:
    """Draft the next issue from the feed and open it; or say on the issues list why not."""
    newsletter = viewer.newsletter(session, slug)
    try:
        # Savepoint: a refused draft (a race with another one) leaves nothing behind.
        with session.begin_nested():
            draft = editions.draft_from_feed(session, newsletter.slug)
    except AppError as exc:
        if exc.status_code >= 500:
            raise
        return issues_page(request, session, viewer, newsletter=newsletter.slug,
                           extra={"feed_problem": f"No draft was made from the feed of "
                                                  f"{newsletter.name}: {exc.detail}"},
                           status_code=exc.status_code)
    if draft.issue is None:
        return issues_page(request, session, viewer, newsletter=newsletter.slug,
                           extra={"feed_nothing": f"{newsletter.name}: {draft.detail}."})
    notice = "feed-more" if draft.items_left_out else "feed"
    return see_other(f"/admin/issues/{draft.issue.id}?notice={notice}")


@router.get("/issues/{issue_id}/edition.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
def edition_pdf(issue_id: DbId, viewer: ViewerDep, session: SessionDep,
                size: Annotated[PageSize, Query()] = "a4") -> Response:
    """The PDF edition as it is (a draft too), for anyone who may see the issue.

    A plain `def`: the first rendering of an issue takes a browser a while."""
    issue = _issue(session, viewer, issue_id)
    body = editions.issue_pdf(issue, page_size=size)
    return Response(body, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{editions.pdf_filename(issue)}"',
        "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
    })


def alerts_for(session: SessionDep, viewer: Viewer) -> list[dict[str, Any]]:
    """The undismissed edition alerts of the newsletters `viewer` sees, newest first, each
    with its newsletter."""
    visible = {n.id: n for n in queries.newsletters(session, viewer.scope)}
    if viewer.scope is None:
        rows = editions.list_alerts(session, limit=MAX_ALERTS)
    else:
        rows = [a for n in visible.values()
                for a in editions.list_alerts(session, newsletter=n.slug, limit=MAX_ALERTS)]
        rows.sort(key=lambda a: (a["created_at"], a["id"]), reverse=True)
    return [{**a, "newsletter": visible[a["newsletter_id"]]}
            for a in rows[:MAX_ALERTS] if a["newsletter_id"] in visible]


@router.post("/alerts/{alert_id}/dismiss")
def dismiss_alert(alert_id: DbId, viewer: EditorDep, session: SessionDep) -> Response:
    record = session.get(EditionAlert, alert_id)
    if record is None or not viewer.sees(record.newsletter_id):
        raise NotFound("there is nothing here")
    editions.dismiss_alert(session, record.id)
    return see_other("/admin?notice=dismissed")

