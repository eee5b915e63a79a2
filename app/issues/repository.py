"""The SQL for issues."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import newest_first_page
from app.issues.models import Issue


def get(session: Session, issue_id: int) -> Issue | None:
    return session.get(Issue, issue_id)


def by_number(
    session: Session, newsletter_id: int, volume: int, number: int, *, status: str | None = None
) -> Issue | None:
    """The issue numbered volume.number of a newsletter (optionally only in `status`)."""
    query = select(Issue).where(
        Issue.newsletter_id == newsletter_id, Issue.volume == volume, Issue.number == number
    )
    if status is not None:
        query = query.where(Issue.status == status)
    return session.scalars(query).first()


def latest(session: Session, newsletter_id: int) -> Issue | None:
    """The highest-numbered issue of a newsletter, sent or not."""
    return session.scalars(
        select(Issue).where(Issue.newsletter_id == newsletter_id)
        .order_by(Issue.volume.desc(), Issue.number.desc()).limit(1)
    ).first()


def max_number(session: Session, newsletter_id: int, volume: int) -> int | None:
    return session.scalar(
        select(func.max(Issue.number)).where(
            Issue.newsletter_id == newsletter_id, Issue.volume == volume
        )
    )


def page(
    session: Session, *, newsletter_id: int | None, status: str | None, before_id: int | None,
    limit: int,
) -> tuple[list[Issue], int | None]:
    """Issues newest first (by id), keyset-paginated: a page and the id to continue below."""
    query = select(Issue)
    if newsletter_id is not None:
        query = query.where(Issue.newsletter_id == newsletter_id)
    if status is not None:
        query = query.where(Issue.status == status)
    return newest_first_page(session, query, Issue.id, before_id=before_id, limit=limit)


def sent(session: Session, newsletter_id: int, *, limit: int) -> Sequence[Issue]:
    """Sent issues of a newsletter, the most recently sent first."""
    return session.scalars(
        select(Issue)
        .where(Issue.newsletter_id == newsletter_id, Issue.status == "sent")
        .order_by(Issue.sent_at.desc(), Issue.id.desc())
        .limit(limit)
    ).all()
