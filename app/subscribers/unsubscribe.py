"""Unsubscribe tokens, links and the unsubscribe itself: the rules every way out shares.

They live here, below the packages that use them, so dependencies point one way: the sign-up
pages (`app.signup`), the send loop and test copies (`app.sending`), the issue preview
(`app.issues`) and the bounce mailbox's `mailto:` unsubscribes (`app.bounces`) all call down
into `app.subscribers`, never sideways into each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy.orm import Session

from app.config import get_settings
from app.mail.models import OutboundMessage
from app.newsletters.models import Newsletter
from app.security import TokenInvalid, sign, unsign
from app.subscribers.models import Subscription
from app.subscribers.service import Actor, set_status


class Outcome(Enum):
    """What following a confirmation or unsubscribe link did (or would do)."""

    CONFIRMED = "confirmed"
    ALREADY = "already"
    STALE = "stale"  # signed before the reader unsubscribed, or the address is suppressed
    EXPIRED = "expired"
    INVALID = "invalid"
    TEST = "test"  # the link of a test copy: shown, never acted upon


@dataclass
class TokenView:
    """A link's outcome, with the newsletter and address it names (for the page shown)."""

    outcome: Outcome
    newsletter: Newsletter | None = None
    email: str | None = None


def fingerprint(key: str) -> str:
    """Binds a token to the address it was sent to: changing the address voids old links."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def unsubscribe_token(sub: Subscription) -> str:
    """The unsubscribe token of a subscription."""
    return unsubscribe_token_for(sub.id, sub.subscriber.email_key)


def unsubscribe_token_for(subscription_id: int, email_key: str) -> str:
    """The unsubscribe token from bare ids, for the send loop (no ORM objects per reader)."""
    return sign("unsubscribe", {"s": subscription_id, "a": fingerprint(email_key)})


def test_unsubscribe_token(message_record_id: int) -> str:
    """The unsubscribe token of a test copy: its link works like a reader's (the page, the
    one-click POST, the mailto) and says it was a test, changing nothing."""
    return sign("unsubscribe-test", {"m": message_record_id})


def unsubscribe_links(token: str) -> tuple[str, str]:
    """The page (and RFC 8058 one-click) URL and the mailto: address for one token. The
    mailto lands in the bounce mailbox, where `missive beat` honours it."""
    settings = get_settings()
    return (f"{settings.base_url}/u/{token}",
            f"mailto:{settings.bounce_address}?subject=unsubscribe%20{token}")


def load_subscription(session: Session, purpose: str, token: str, max_age: int | None
                      ) -> tuple[Subscription, datetime]:
    """The subscription a signed token names (locked) and when it was signed.

    Raises TokenInvalid (forged, or the address changed since) or TokenExpired.
    """
    payload, signed_at = unsign(purpose, token, max_age_seconds=max_age)
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), int):
        raise TokenInvalid("bad payload")
    sub = session.get(Subscription, payload["s"], with_for_update=True)
    if sub is None or payload.get("a") != fingerprint(sub.subscriber.email_key):
        raise TokenInvalid("no such subscription")
    return sub, signed_at


def unsubscribe_target(session: Session, token: str) -> Subscription | None:
    """The subscription an unsubscribe token names (it never expires), or None if forged."""
    try:
        return load_subscription(session, "unsubscribe", token, None)[0]
    except TokenInvalid:
        return None


def view_of_test_copy(session: Session, token: str) -> TokenView | None:
    """The view of a test copy's unsubscribe token, or None if `token` is not one."""
    try:
        payload, _ = unsign("unsubscribe-test", token)
    except TokenInvalid:
        return None
    row = session.get(OutboundMessage, payload.get("m")) if isinstance(payload, dict) and \
        isinstance(payload.get("m"), int) else None
    if row is None:
        return None
    newsletter = session.get(Newsletter, row.newsletter_id) if row.newsletter_id else None
    return TokenView(Outcome.TEST, newsletter, row.email)


def unsubscribe(session: Session, token: str, actor: Actor) -> TokenView:
    """Unsubscribe the reader behind `token` from its newsletter, at once."""
    sub = unsubscribe_target(session, token)
    if sub is None:
        return view_of_test_copy(session, token) or TokenView(Outcome.INVALID)
    view = TokenView(Outcome.CONFIRMED, sub.newsletter, sub.subscriber.email)
    if sub.status == "unsubscribed":
        view.outcome = Outcome.ALREADY
        return view
    set_status(session, sub.subscriber, sub.newsletter, "unsubscribed", actor)
    return view


def unsubscribe_everywhere(session: Session, token: str, actor: Actor) -> TokenView:
    """Leave every newsletter this reader is on."""
    sub = unsubscribe_target(session, token)
    if sub is None:
        return view_of_test_copy(session, token) or TokenView(Outcome.INVALID)
    for other in list(sub.subscriber.subscriptions):
        if other.status != "unsubscribed":
            set_status(session, sub.subscriber, other.newsletter, "unsubscribed", actor)
    return TokenView(Outcome.ALREADY, sub.newsletter, sub.subscriber.email)
