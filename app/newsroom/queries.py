"""The SQL the newsroom pages need beyond what the other packages' repositories offer.

Each query takes the viewer's newsletter scope (None: every newsletter) so a limited user never
sees a row of another newsletter, whatever the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from app.bounces.models import BounceRecord
from app.db import newest_first_page, utcnow
from app.issues.models import Issue
from app.newsletters.models import Newsletter
from app.ops import tallies
from app.sending.models import Delivery, Send
from app.subscribers.models import (
    ConsentEvent,
    ImportJob,
    Subscriber,
    Subscription,
    Suppression,
)
from app.validation import erased_key

Scope = frozenset[int] | None


def newsletters(session: Session, scope: Scope) -> Sequence[Newsletter]:
    """The newsletters a viewer may see, by name."""
    stmt = select(Newsletter).order_by(Newsletter.name)
    if scope is not None:
        stmt = stmt.where(Newsletter.id.in_(scope))
    return session.scalars(stmt).all()


def subscription_counts(session: Session, newsletter_id: int) -> dict[str, int]:
    """Subscriptions of a newsletter by status, exact, from the tallies the database keeps."""
    return tallies.counts(session, "subscriptions", newsletter_id)


def new_since(session: Session, newsletter_id: int, since: datetime) -> int:
    """Subscriptions of a newsletter confirmed since a time (its growth): a range of the
    newsletter+status+confirmed_at index."""
    return int(session.scalar(
        select(func.count()).select_from(Subscription).where(
            Subscription.newsletter_id == newsletter_id, Subscription.status == "active",
            Subscription.confirmed_at >= since)) or 0)


def _sends(scope: Scope) -> Select[Send]:
    stmt = select(Send).join(Issue, Issue.id == Send.issue_id)
    if scope is not None:
        stmt = stmt.where(Issue.newsletter_id.in_(scope))
    return stmt


def last_send(session: Session, newsletter_id: int) -> Send | None:
    return session.scalars(
        _sends(None).where(Issue.newsletter_id == newsletter_id)
        .order_by(Send.id.desc()).limit(1)).first()


def paused_sends(session: Session, scope: Scope) -> Sequence[Send]:
    return session.scalars(_sends(scope).where(Send.status == "paused")
                           .order_by(Send.id.desc()).limit(20)).all()


def sends_with_unknown(session: Session, scope: Scope) -> list[tuple[Send, int]]:
    """Recent sends with rows left `unknown` by a vanished worker, with how many."""
    recent = select(Send.id).join(Issue, Issue.id == Send.issue_id).where(
        Send.created_at >= utcnow() - timedelta(days=90))
    if scope is not None:
        recent = recent.where(Issue.newsletter_id.in_(scope))
    rows = session.execute(
        select(Delivery.send_id, func.count()).where(
            Delivery.send_id.in_(recent), Delivery.status == "unknown")
        .group_by(Delivery.send_id).order_by(Delivery.send_id.desc()).limit(20)).all()
    out = []
    for send_id, count in rows:
        send = session.get(Send, send_id)
        if send is not None:
            out.append((send, int(count)))
    return out


def policy_rejections(session: Session, scope: Scope, *, days: int = 30) -> int:
    """5.7.x policy rejections recorded lately (they point at the sender, not a reader)."""
    stmt = select(func.count()).select_from(BounceRecord).where(
        BounceRecord.kind == "policy", BounceRecord.received_at >= utcnow() - timedelta(days=days))
    if scope is not None:
        stmt = stmt.join(Send, Send.id == BounceRecord.send_id).join(
            Issue, Issue.id == Send.issue_id).where(Issue.newsletter_id.in_(scope))
    return int(session.scalar(stmt) or 0)


def send_page(session: Session, scope: Scope, *, status: str | None, before_id: int | None,
              limit: int) -> tuple[list[Send], int | None]:
    """Sends newest first, keyset-paginated by id."""
    stmt = _sends(scope)
    if status:
        stmt = stmt.where(Send.status == status)
    return newest_first_page(session, stmt, Send.id, before_id=before_id, limit=limit)


def issue_page(session: Session, scope: Scope, *, newsletter_id: int | None,
               status: str | None, before_id: int | None, limit: int
               ) -> tuple[list[Issue], int | None]:
    """Issues newest first, keyset-paginated by id."""
    stmt = select(Issue)
    if scope is not None:
        stmt = stmt.where(Issue.newsletter_id.in_(scope))
    if newsletter_id is not None:
        stmt = stmt.where(Issue.newsletter_id == newsletter_id)
    if status:
        stmt = stmt.where(Issue.status == status)
    return newest_first_page(session, stmt, Issue.id, before_id=before_id, limit=limit)


def send_of_issue(session: Session, issue_id: int) -> Send | None:
    return session.scalars(select(Send).where(Send.issue_id == issue_id)).first()


def sends_of_issues(session: Session, issues: Sequence[Issue]) -> dict[int, Send]:
    """The send of each of `issues` that has one, by issue id (one query for a list page)."""
    ids = [i.id for i in issues]
    if not ids:
        return {}
    return {s.issue_id: s for s in session.scalars(select(Send).where(Send.issue_id.in_(ids)))}


def bounces_of_send(session: Session, send_id: int, *, limit: int = 50) -> Sequence[BounceRecord]:
    return session.scalars(select(BounceRecord).where(BounceRecord.send_id == send_id)
                           .order_by(BounceRecord.id.desc()).limit(limit)).all()


def audience_count(session: Session, newsletter_id: int) -> int:
    """Readers an issue of this newsletter would go to now: active and not suppressed (the
    same rule as the send's snapshot). The active count comes from the tallies; the suppressed
    among them are counted from the suppression list, which is far shorter than the list."""
    active = tallies.counts(session, "subscriptions", newsletter_id).get("active", 0)
    # A lookup per suppressed address (two index probes): written as a correlated subquery
    # because as a join the planner prefers reading every subscriber into a hash.
    status_here = (
        select(Subscription.status).join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.email_key == Suppression.email_key,
               Subscription.newsletter_id == newsletter_id)
        .scalar_subquery())
    suppressed = int(session.scalar(
        select(func.count()).select_from(Suppression).where(status_here == "active")) or 0)
    return active - suppressed


def consent_log(session: Session, subscriber_id: int, scope: Scope, *, limit: int = 50
                ) -> Sequence[ConsentEvent]:
    stmt = select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id)
    if scope is not None:
        stmt = stmt.where(ConsentEvent.newsletter_id.in_(scope))
    return session.scalars(stmt.order_by(ConsentEvent.id.desc()).limit(limit)).all()


def bounces_of(session: Session, subscriber_id: int, email_key: str, *, limit: int = 50
               ) -> Sequence[BounceRecord]:
    return session.scalars(
        select(BounceRecord).where(or_(BounceRecord.subscriber_id == subscriber_id,
                                       BounceRecord.email_key == email_key))
        .order_by(BounceRecord.id.desc()).limit(limit)).all()


def deliveries_of(session: Session, subscriber_id: int, scope: Scope, *, limit: int = 20
                  ) -> Sequence[tuple[Delivery, Issue]]:
    stmt = (select(Delivery, Issue).join(Send, Send.id == Delivery.send_id)
            .join(Issue, Issue.id == Send.issue_id)
            .where(Delivery.subscriber_id == subscriber_id))
    if scope is not None:
        stmt = stmt.where(Issue.newsletter_id.in_(scope))
    return [(d, i) for d, i in session.execute(
        stmt.order_by(Delivery.id.desc()).limit(limit))]


def suppression(session: Session, email_key: str) -> Suppression | None:
    return session.scalars(select(Suppression).where(Suppression.email_key == email_key)).first()


def bounce_page(session: Session, scope: Scope, *, kind: str | None, email: str | None,
                before_id: int | None, limit: int) -> tuple[list[BounceRecord], int | None]:
    """Bounce and complaint events newest first; a limited user sees those of their sends."""
    stmt = select(BounceRecord)
    if scope is not None:
        stmt = stmt.join(Send, Send.id == BounceRecord.send_id).join(
            Issue, Issue.id == Send.issue_id).where(Issue.newsletter_id.in_(scope))
    if kind:
        stmt = stmt.where(BounceRecord.kind == kind)
    if email:
        stmt = stmt.where(BounceRecord.email_key == email.strip().lower())
    return newest_first_page(session, stmt, BounceRecord.id, before_id=before_id, limit=limit)


def suppression_page(session: Session, *, email: str | None, before_id: int | None,
                     limit: int) -> tuple[list[Suppression], int | None]:
    stmt = select(Suppression)
    if email:
        key = email.strip().lower()
        # An erased address is suppressed under its hash: the editor finds it by the address.
        stmt = stmt.where(Suppression.email_key.in_([key, erased_key(key)]))
    return newest_first_page(session, stmt, Suppression.id, before_id=before_id, limit=limit)


def recent_imports(session: Session, scope: Scope, *, limit: int = 5) -> Sequence[ImportJob]:
    """The latest CSV imports into the newsletters the user sees, newest first."""
    stmt = select(ImportJob).order_by(ImportJob.id.desc()).limit(limit)
    if scope is not None:
        stmt = stmt.where(ImportJob.newsletter_id.in_(scope))
    return session.scalars(stmt).all()
