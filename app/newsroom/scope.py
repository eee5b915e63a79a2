"""Newsletter scope for API tokens: a token of a user limited to some newsletters reaches
nothing of the others (404, as if it did not exist).

The check reads what the request names (path ids, a `newsletter` filter) before the route
runs, so the API's routers stay as they are. What a scoped token cannot prove from those — an
unfiltered list, a new issue or subscriber whose newsletter is in the body — it may not do.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import AppError, NotFound
from app.issues.models import Issue
from app.newsletters.models import Newsletter
from app.sending.models import Send
from app.subscribers.models import Subscription

# Lists that must name one of the token's newsletters; creations it cannot check.
NEEDS_FILTER = ("/api/v1/issues", "/api/v1/subscribers", "/api/v1/subscribers/export")
REFUSED = {("POST", "/api/v1/issues"), ("POST", "/api/v1/subscribers"),
           ("POST", "/api/v1/newsletters"), ("GET", "/api/v1/bounces"),
           ("POST", "/api/v1/bounces")}


class ScopeRefused(AppError):
    status_code = 403


def _newsletter_ids_of(session: Session, name: str, value: str) -> set[int] | None:
    """The newsletters the thing a path parameter names belongs to (None: not scoped)."""
    if name == "slug" or name == "newsletter":
        found = session.scalar(select(Newsletter.id).where(Newsletter.slug == value))
        return {found} if found is not None else set()
    if not value.isdigit() or len(value) > 10:
        return None  # the route answers 422 for it
    key = int(value)
    if name == "issue_id":
        found = session.scalar(select(Issue.newsletter_id).where(Issue.id == key))
    elif name == "send_id":
        found = session.scalar(select(Issue.newsletter_id).join(Send, Send.issue_id == Issue.id)
                               .where(Send.id == key))
    elif name == "subscriber_id":
        return set(session.scalars(select(Subscription.newsletter_id)
                                   .where(Subscription.subscriber_id == key)))
    else:
        return None
    return {found} if found is not None else set()


def check_api_request(session: Session, request: Request, scope: frozenset[int]) -> None:
    """NotFound when the request names something outside `scope`; 403 for what a limited
    token may not do."""
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    if (request.method, template) in REFUSED:
        raise ScopeRefused("this token is limited to some newsletters and may not do this")
    names = dict(request.path_params)
    if "newsletter" in request.query_params:
        names["newsletter"] = request.query_params["newsletter"]
    elif request.method == "GET" and template in NEEDS_FILTER:
        raise ScopeRefused("this token is limited to some newsletters: add ?newsletter=SLUG")
    for name, value in names.items():
        owners = _newsletter_ids_of(session, name, str(value))
        if owners is not None and not owners & scope:
            raise NotFound("not found")
