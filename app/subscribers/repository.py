"""Queries on subscribers, subscriptions, consent and suppressions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Select, exists, or_, select, text
from sqlalchemy.orm import Session, selectinload

from app.subscribers.models import ConsentEvent, Subscriber, Subscription, Suppression
from app.validation import erased_key


def get(session: Session, subscriber_id: int) -> Subscriber | None:
    """One subscriber with their subscriptions loaded."""
    return session.scalars(
        select(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .options(selectinload(Subscriber.subscriptions).selectinload(Subscription.newsletter))
    ).first()


def get_by_email_key(session: Session, key: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(Subscriber.email_key == key)).first()


def subscription(session: Session, subscriber_id: int, newsletter_id: int) -> Subscription | None:
    return session.scalars(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber_id,
            Subscription.newsletter_id == newsletter_id,
        )
    ).first()


def suppression_reasons(session: Session, keys: Iterable[str]) -> dict[str, str]:
    """`email_key → reason` for those of `keys` on the suppression list, in the clear or, for
    an erased address, as its hash."""
    keys = list(set(keys))
    if not keys:
        return {}
    hashed = {erased_key(k): k for k in keys}
    rows = session.execute(
        select(Suppression.email_key, Suppression.reason)
        .where(Suppression.email_key.in_([*keys, *hashed]))
    )
    return {hashed.get(k, k): r for k, r in rows}


def erased_keys(session: Session, keys: Iterable[str]) -> set[str]:
    """Those of `keys` whose address was erased (its hash is on the suppression list)."""
    hashed = {erased_key(k): k for k in set(keys)}
    if not hashed:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        # An import asks for 1,000 keys a batch: one array parameter, not 1,000 placeholders.
        found = session.scalars(_PG_SUPPRESSED, {"keys": list(hashed)})
    else:
        found = session.scalars(
            select(Suppression.email_key).where(Suppression.email_key.in_(list(hashed))))
    return {hashed[h] for h in found}


_PG_SUPPRESSED = text(
    "SELECT email_key FROM suppressions WHERE email_key = ANY(CAST(:keys AS text[]))")


def add_consent(session: Session, event: ConsentEvent) -> None:
    session.add(event)


def page_query(
    *,
    newsletter_id: int | None,
    status: str | None,
    q: str | None,
    after_id: int | None,
    limit: int,
) -> Select[Subscriber]:
    """Subscribers in id order after `after_id`, filtered by newsletter, status and a search."""
    # An erased subscriber stays only as a nameless row under its sent deliveries.
    stmt = select(Subscriber).where(Subscriber.email != "").order_by(Subscriber.id).limit(limit)
    if after_id is not None:
        stmt = stmt.where(Subscriber.id > after_id)
    if status in ("bounced", "complained", "manual"):
        stmt = stmt.where(
            exists().where(
                Suppression.email_key == Subscriber.email_key, Suppression.reason == status
            )
        )
        status = None
    if newsletter_id is not None or status is not None:
        cond = Subscription.subscriber_id == Subscriber.id
        if newsletter_id is not None:
            cond = cond & (Subscription.newsletter_id == newsletter_id)
        if status is not None:
            cond = cond & (Subscription.status == status)
        stmt = stmt.where(exists().where(cond))
    if q:
        # LIKE wildcards in the search text are matched literally.
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        stmt = stmt.where(
            or_(
                Subscriber.email_key.like(pattern, escape="\\"),
                Subscriber.name.ilike(pattern, escape="\\"),
            )
        )
    return stmt.options(
        selectinload(Subscriber.subscriptions).selectinload(Subscription.newsletter)
    )


def list_page(session: Session, stmt: Select[Subscriber]) -> Sequence[Subscriber]:
    return session.scalars(stmt).all()
