"""The SQL for editions: used feed items and editor alerts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.editions.models import EditionAlert, FeedItemUse
from app.issues.models import Issue
from app.newsletters.models import Newsletter


def used_keys(session: Session, newsletter_id: int, keys: Iterable[str]) -> set[str]:
    """Which of `keys` an issue of the newsletter has used already."""
    wanted = list(set(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(session.scalars(select(FeedItemUse.item_key).where(
            FeedItemUse.newsletter_id == newsletter_id,
            FeedItemUse.item_key.in_(wanted[start:start + 500]))))
    return found


def record_used(session: Session, newsletter_id: int, issue_id: int, keys: Iterable[str]
                ) -> None:
    session.add_all([FeedItemUse(newsletter_id=newsletter_id, issue_id=issue_id, item_key=key)
                     for key in dict.fromkeys(keys)])
    session.flush()


def last_sent(session: Session, newsletter_id: int) -> Issue | None:
    """The newsletter's most recently sent issue."""
    return session.scalars(
        select(Issue).where(Issue.newsletter_id == newsletter_id, Issue.status == "sent")
        .order_by(Issue.sent_at.desc(), Issue.id.desc()).limit(1)
    ).first()


def lock_newsletter(session: Session, newsletter_id: int) -> Newsletter | None:
    """The newsletter row, locked until commit: one draft from its feed at a time."""
    return session.scalars(
        select(Newsletter).where(Newsletter.id == newsletter_id).with_for_update()
    ).first()


def feed_drafting(session: Session) -> Sequence[Newsletter]:
    """Newsletters that asked beat to draft from their feed."""
    return session.scalars(
        select(Newsletter).where(Newsletter.feed_drafts != "off", Newsletter.feed_url.is_not(None))
        .order_by(Newsletter.id)
    ).all()


def claim_slot(session: Session, newsletter_id: int, slot: datetime) -> Newsletter | None:
    """The newsletter locked (skipping one another beat holds) if `slot` is not drafted yet."""
    newsletter = session.scalars(
        select(Newsletter).where(Newsletter.id == newsletter_id)
        .with_for_update(skip_locked=True)
    ).first()
    if newsletter is None or newsletter.feed_drafted_slot == slot:
        return None
    return newsletter


def alerts(session: Session, *, newsletter_id: int | None, include_dismissed: bool,
           limit: int) -> Sequence[EditionAlert]:
    query = select(EditionAlert).order_by(EditionAlert.created_at.desc(), EditionAlert.id.desc())
    if newsletter_id is not None:
        query = query.where(EditionAlert.newsletter_id == newsletter_id)
    if not include_dismissed:
        query = query.where(EditionAlert.dismissed_at.is_(None))
    return session.scalars(query.limit(limit)).all()


def issue_took_feed_items(session: Session, issue_id: int) -> bool:
    """Whether the issue was drafted from the feed."""
    return session.scalar(
        select(FeedItemUse.id).where(FeedItemUse.issue_id == issue_id).limit(1)
    ) is not None
