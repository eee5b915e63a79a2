"""Subscribers and their subscriptions: the rules, whoever calls (API, sign-up form, import)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.newsletters import service as newsletters
from app.newsletters.models import Newsletter
from app.subscribers import repository as repo
from app.subscribers.models import ConsentEvent, Subscriber, Subscription, Suppression
from app.subscribers.schemas import (
    SubscriberCreate,
    SubscriberOut,
    SubscriberPage,
    SubscriberUpdate,
    SubscriptionIn,
    SubscriptionOut,
)
from app.validation import (
    MAX_NAME,
    clean_attributes,
    clean_text,
    email_key,
    normalise_email,
)

MAX_PAGE = 500
MAX_ID = 2**31 - 1  # the integer primary keys


@dataclass(frozen=True)
class Actor:
    """Who made a change, for the consent log."""

    source: str
    ip: str | None = None
    user_agent: str | None = None


def to_out(
    session: Session, subscriber: Subscriber, reasons: dict[str, str] | None = None
) -> SubscriberOut:
    """The API view of a subscriber; `reasons` is a pre-fetched suppression map for a page."""
    if reasons is None:
        reasons = repo.suppression_reasons(session, [subscriber.email_key])
    suppressed = reasons.get(subscriber.email_key)
    return SubscriberOut(
        id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        attributes=subscriber.attributes or {},
        suppressed=suppressed,
        created_at=subscriber.created_at,
        subscriptions=[
            SubscriptionOut(
                newsletter=s.newsletter.slug,
                status=s.status,
                created_at=s.created_at,
                confirmed_at=s.confirmed_at,
                unsubscribed_at=s.unsubscribed_at,
            )
            for s in sorted(subscriber.subscriptions, key=lambda s: s.newsletter_id)
        ],
    )


def get(session: Session, subscriber_id: int) -> Subscriber:
    """The subscriber with this id, or NotFound."""
    subscriber = repo.get(session, subscriber_id)
    # An erased subscriber is only a nameless row under deliveries: for everyone, gone.
    if subscriber is None or subscriber.email == "":
        raise NotFound(f"no subscriber {subscriber_id}")
    return subscriber


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


_CURSOR = re.compile(r"id:([1-9][0-9]{0,9})")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error) as exc:
        raise Invalid("invalid cursor") from exc
    # Only what _encode_cursor makes: an id that fits the column (a larger one is a database
    # error, not an empty page).
    match = _CURSOR.fullmatch(raw)
    if match is None or int(match[1]) > MAX_ID:
        raise Invalid("invalid cursor")
    return int(match[1])


def list_page(
    session: Session,
    *,
    newsletter: str | None = None,
    status: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> SubscriberPage:
    """One page of subscribers in id order; `next_cursor` continues it."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}")
    allowed = ("pending", "active", "unsubscribed", "bounced", "complained", "manual")
    if status is not None and status not in allowed:
        raise Invalid(f"status must be one of {', '.join(allowed)}")
    newsletter_id = newsletters.get_by_slug(session, newsletter).id if newsletter else None
    after_id = _decode_cursor(cursor) if cursor else None
    if q is not None:
        q = clean_text(q, field="q", max_length=254)
    stmt = repo.page_query(
        newsletter_id=newsletter_id, status=status, q=q, after_id=after_id, limit=limit + 1
    )
    rows = list(repo.list_page(session, stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    reasons = repo.suppression_reasons(session, [s.email_key for s in rows])
    return SubscriberPage(
        items=[to_out(session, s, reasons) for s in rows],
        next_cursor=_encode_cursor(rows[-1].id) if more and rows else None,
    )


def set_status(
    session: Session,
    subscriber: Subscriber,
    newsletter: Newsletter,
    status: str,
    actor: Actor,
) -> Subscription:
    """Put `subscriber` on `newsletter` with `status`, logging consent as it changes."""
    sub = repo.subscription(session, subscriber.id, newsletter.id)
    now = utcnow()
    if sub is None:
        sub = Subscription(
            subscriber=subscriber, newsletter=newsletter, status=status, source=actor.source
        )
        session.add(sub)
        action = {"pending": "signup", "active": "admin", "unsubscribed": "admin"}[status]
    elif sub.status == status:
        return sub
    else:
        action = {"pending": "signup", "active": "resubscribe", "unsubscribed": "unsubscribe"}[
            status
        ]
        sub.status = status
    if status == "active":
        sub.confirmed_at = sub.confirmed_at or now
        sub.unsubscribed_at = None
    elif status == "unsubscribed":
        sub.unsubscribed_at = now
    session.flush()
    repo.add_consent(
        session,
        ConsentEvent(
            subscriber_id=subscriber.id,
            newsletter_id=newsletter.id,
            action=action,
            source=actor.source,
            ip=actor.ip,
            user_agent=actor.user_agent,
        ),
    )
    return sub


def _apply_subscriptions(
    session: Session, subscriber: Subscriber, items: list[SubscriptionIn], actor: Actor
) -> None:
    for item in items:
        set_status(
            session, subscriber, newsletters.get_by_slug(session, item.newsletter), item.status,
            actor,
        )


ERASED_ADDRESS = ("this address was erased at the reader's request: it stays suppressed and is "
                  "not stored again")


def _refuse_erased(session: Session, key: str) -> None:
    if repo.erased_keys(session, [key]):
        raise Conflict(ERASED_ADDRESS)


def _flush_address(session: Session, subscriber: Subscriber, conflict: str) -> None:
    # The check before this one cannot see a transaction that is storing the same address
    # right now; the unique index can. A savepoint turns that into a Conflict, not a 500.
    try:
        with session.begin_nested():
            session.add(subscriber)
    except IntegrityError as exc:
        raise Conflict(conflict) from exc


def create(session: Session, data: SubscriberCreate, actor: Actor) -> Subscriber:
    """A new subscriber from the editor API; Conflict if the address is known."""
    email = normalise_email(data.email)
    if repo.get_by_email_key(session, email_key(email)) is not None:
        raise Conflict("a subscriber with this address exists already")
    _refuse_erased(session, email_key(email))
    subscriber = Subscriber(
        email=email,
        email_key=email_key(email),
        name=clean_text(data.name, field="name", max_length=MAX_NAME),
        attributes=clean_attributes(data.attributes),
    )
    _flush_address(session, subscriber, "a subscriber with this address exists already")
    _apply_subscriptions(session, subscriber, data.subscriptions, actor)
    session.flush()
    return get(session, subscriber.id)


def update(
    session: Session, subscriber_id: int, data: SubscriberUpdate, actor: Actor
) -> Subscriber:
    """Change a subscriber's address, name, attributes or subscriptions."""
    subscriber = get(session, subscriber_id)
    if data.email is not None:
        email = normalise_email(data.email)
        other = repo.get_by_email_key(session, email_key(email))
        if other is not None and other.id != subscriber.id:
            raise Conflict("another subscriber has this address")
        _refuse_erased(session, email_key(email))
        subscriber.email, subscriber.email_key = email, email_key(email)
        _flush_address(session, subscriber, "another subscriber has this address")
    if data.name is not None:
        subscriber.name = clean_text(data.name, field="name", max_length=MAX_NAME)
    if data.attributes is not None:
        subscriber.attributes = clean_attributes(data.attributes)
    if data.subscriptions is not None:
        _apply_subscriptions(session, subscriber, data.subscriptions, actor)
    session.flush()
    session.expire(subscriber)
    return get(session, subscriber.id)


def suppress(session: Session, address: str, reason: str, detail: str = "") -> None:
    """Put an address on the suppression list; Invalid if it is not an address.
    See `suppress_key` for which reason stays."""
    suppress_key(session, email_key(normalise_email(address)), reason, detail)


def suppress_key(session: Session, key: str, reason: str, detail: str = "") -> None:
    """The one suppression rule, whoever suppresses (bounce policy, complaints, editors):
    idempotent, the first reason stays, except that a complaint outranks a bounce: it says
    never again, whatever happens to the mailbox later. `key` is an address key as stored."""
    existing = session.scalars(select(Suppression).where(Suppression.email_key == key)).first()
    if existing is None:
        session.add(Suppression(email_key=key, reason=reason, detail=detail))
    elif reason == "complained" and existing.reason != "complained":
        existing.reason, existing.detail = reason, detail
    session.flush()


def is_suppressed(session: Session, key: str) -> bool:
    return bool(repo.suppression_reasons(session, [key]))


def lift_suppression(session: Session, suppression_id: int, *, note: str, actor: Actor) -> str:
    """Take an address off the suppression list, with the reason why in the consent log of
    its subscriber (if it still has one). Returns the address key."""
    note = clean_text(note, field="note", max_length=150)
    if not note:
        raise Invalid("Please say why the suppression is lifted.")
    row = session.get(Suppression, suppression_id)
    if row is None:
        raise NotFound(f"no suppression {suppression_id}")
    subscriber = repo.get_by_email_key(session, row.email_key)
    if subscriber is not None:
        repo.add_consent(session, ConsentEvent(
            subscriber_id=subscriber.id, newsletter_id=None, action="unsuppress",
            source=f"{actor.source} ({row.reason}): {note}"[:200], ip=actor.ip,
            user_agent=actor.user_agent))
    session.delete(row)
    session.flush()
    return row.email_key
