"""Erasing a reader: their personal data goes, what the newsletter must remember stays.

What goes: the address, name and attributes; the consent log (with its IP addresses and
browsers); the records of confirmation, welcome and test mails; the address wherever a bounce,
a delivery's server reply or a suppression holds it. What stays: a suppression keyed by a hash
of the address (so an import, an API call or a sign-up of it is refused or ignored as for any
suppressed address), and a nameless subscriber row with its subscriptions (now unsubscribed) and
deliveries, so the counts of issues already sent stay right (a reader nothing was sent to
goes whole, subscriptions and all).
"""

from __future__ import annotations

import re

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.bounces.models import BounceRecord
from app.db import utcnow
from app.mail.models import OutboundMessage
from app.sending.models import Delivery
from app.subscribers import repository as repo
from app.subscribers.models import ConsentEvent, Subscriber, Subscription, Suppression
from app.subscribers.service import Actor, get
from app.validation import email_key, erased_key, normalise_email

ERASED = "[erased]"


def erase(session: Session, subscriber_id: int, actor: Actor) -> None:
    """Erase a subscriber (NotFound if there is none, or it is erased already)."""
    subscriber = get(session, subscriber_id)
    _forget_address(session, subscriber.email_key, subscriber_id=subscriber.id, actor=actor)
    if session.scalar(select(Delivery.id).where(Delivery.subscriber_id == subscriber.id)
                      .limit(1)) is None:
        # Nothing sent counts them: the row goes, with its subscriptions and consent log.
        session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
        session.expire_all()
        return
    session.execute(update(Subscription).where(
        Subscription.subscriber_id == subscriber.id, Subscription.status != "unsubscribed",
    ).values(status="unsubscribed", unsubscribed_at=utcnow()))
    session.execute(delete(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber.id))
    # The one line the log keeps: that an editor erased this reader, and when.
    session.add(ConsentEvent(subscriber_id=subscriber.id, newsletter_id=None, action="erase",
                             source=actor.source))
    subscriber.email, subscriber.email_key = "", f"erased:{subscriber.id}"
    subscriber.name, subscriber.attributes = "", {}
    session.flush()
    session.expire_all()


def erase_address(session: Session, address: str, actor: Actor) -> bool:
    """Erase the subscriber with this address, or, when there is none, what else holds it.
    True when there was a subscriber. Invalid if `address` is not an address."""
    key = email_key(normalise_email(address))
    subscriber = repo.get_by_email_key(session, key)
    if subscriber is not None:
        erase(session, subscriber.id, actor)
        return True
    _forget_address(session, key, subscriber_id=None, actor=actor)
    session.flush()
    return False


def _forget_address(session: Session, key: str, *, subscriber_id: int | None,
                    actor: Actor) -> None:
    pattern = re.compile(re.escape(key), re.IGNORECASE)
    _suppress_hashed(session, key, actor)
    mine = [OutboundMessage.email_key == key]
    if subscriber_id is not None:
        mine.append(OutboundMessage.subscriber_id == subscriber_id)
    session.execute(delete(OutboundMessage).where(or_(*mine)))
    bounce_of = [BounceRecord.email_key == key]
    if subscriber_id is not None:
        bounce_of.append(BounceRecord.subscriber_id == subscriber_id)
    for bounce in session.scalars(select(BounceRecord).where(or_(*bounce_of))):
        bounce.email_key = None
        bounce.diagnostic = pattern.sub(ERASED, bounce.diagnostic or "")
    if subscriber_id is not None:
        replies = session.execute(select(Delivery.id, Delivery.smtp_reply).where(
            Delivery.subscriber_id == subscriber_id, Delivery.smtp_reply.is_not(None)))
        for delivery_id, reply in replies.all():
            if reply and pattern.search(reply):
                session.execute(update(Delivery).where(Delivery.id == delivery_id)
                                .values(smtp_reply=pattern.sub(ERASED, reply)))


def _suppress_hashed(session: Session, key: str, actor: Actor) -> None:
    """The address's suppression, in the clear or not, becomes one under its hash."""
    hashed = erased_key(key)
    clear = session.scalars(select(Suppression).where(Suppression.email_key == key)).first()
    kept = session.scalars(select(Suppression).where(Suppression.email_key == hashed)).first()
    detail = f"erased by {actor.source}"[:200]
    if clear is not None:
        detail += f"; suppressed before: {clear.reason}"
        session.delete(clear)
        session.flush()
    if kept is None:
        session.add(Suppression(email_key=hashed, reason="erased", detail=detail))
    else:
        kept.detail = detail
    session.flush()

