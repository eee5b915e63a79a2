"""Double opt-in: sign-up, the confirmation mail, confirming, the welcome mail, leaving.

Whatever the state of an address, `sign_up` answers the same way, so the form never reveals
who is subscribed. Mails go out from worker tasks enqueued after the sign-up commits.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ratelimit
from app.config import get_settings
from app.db import dialect_insert, session_scope, utcnow
from app.errors import TooManyRequests
from app.mail import compose, outbound
from app.mail.models import OutboundMessage
from app.mail.transport import Transport
from app.newsletters import service as newsletters
from app.newsletters.models import Newsletter
from app.ops import counters
from app.queue import enqueue_after_commit
from app.security import TokenExpired, TokenInvalid, sign, unsign
from app.subscribers import repository as repo
from app.subscribers.models import ConsentEvent, Subscriber, Subscription
from app.subscribers.service import Actor, is_suppressed, set_status
from app.validation import MAX_NAME, clean_text, email_key, normalise_email

log = logging.getLogger(__name__)


def _fingerprint(key: str) -> str:
    # Binds a token to the address it was sent to: changing the address voids old links.
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def confirm_token(sub: Subscription) -> str:
    return sign("confirm", {"s": sub.id, "a": _fingerprint(sub.subscriber.email_key)})


def unsubscribe_token(sub: Subscription) -> str:
    return unsubscribe_token_for(sub.id, sub.subscriber.email_key)


def unsubscribe_token_for(subscription_id: int, email_key: str) -> str:
    """The unsubscribe token from bare ids, for the send loop (no ORM objects per reader)."""
    return sign("unsubscribe", {"s": subscription_id, "a": _fingerprint(email_key)})


def test_unsubscribe_token(message_record_id: int) -> str:
    """The unsubscribe token of a test copy: its link works like a reader's (the page, the
    one-click POST, the mailto) and says it was a test, changing nothing."""
    return sign("unsubscribe-test", {"m": message_record_id})


def _test_view(session: Session, token: str) -> TokenView | None:
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


def unsubscribe_links(token: str) -> tuple[str, str]:
    """The page (and RFC 8058 one-click) URL and the mailto: address for one token. The
    mailto lands in the bounce mailbox, where `missive beat` honours it."""
    settings = get_settings()
    return (f"{settings.base_url}/u/{token}",
            f"mailto:{settings.bounce_address}?subject=unsubscribe%20{token}")


def _load(session: Session, purpose: str, token: str, max_age: int | None) -> tuple[
    Subscription, datetime
]:
    payload, signed_at = unsign(purpose, token, max_age_seconds=max_age)
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), int):
        raise TokenInvalid("bad payload")
    sub = session.get(Subscription, payload["s"], with_for_update=True)
    if sub is None or payload.get("a") != _fingerprint(sub.subscriber.email_key):
        raise TokenInvalid("no such subscription")
    return sub, signed_at


@dataclass(frozen=True)
class SignupRequest:
    """A sign-up that passed its checks, waiting to be recorded."""

    newsletter_id: int
    address: str
    key: str
    name: str
    actor: Actor


def accept_sign_up(
    session: Session, *, slug: str, email: str, name: str | None, actor: Actor
) -> SignupRequest:
    """Check a sign-up: its input and the rate limits. The same work for every address.

    Nothing here looks the address up: whether it is new, pending, active or suppressed is
    only found out by `record_sign_up`, after the answer has gone (so the answer's timing
    cannot tell). Raises Invalid for bad input and TooManyRequests past the limits.
    """
    settings = get_settings()
    newsletter = newsletters.get_by_slug(session, slug)
    address = normalise_email(email)
    clean_name = clean_text(name, field="name", max_length=MAX_NAME)
    key = email_key(address)
    if actor.ip and not ratelimit.hit(
        f"signup-ip:{actor.ip}", limit=settings.signup_ip_per_minute, per_seconds=60
    ):
        raise TooManyRequests("too many sign-ups from your address; try again in a minute")
    if not ratelimit.hit(
        f"signup-addr:{key}", limit=settings.signup_address_per_hour, per_seconds=3600
    ):
        raise TooManyRequests("too many sign-ups for this email address; try again later")
    return SignupRequest(newsletter.id, address, key, clean_name, actor)


def record_sign_up(session: Session, request: SignupRequest) -> None:
    """Record an accepted sign-up and, where one is due, enqueue a confirmation mail."""
    settings = get_settings()
    newsletter = session.get(Newsletter, request.newsletter_id)
    if newsletter is None or is_suppressed(session, request.key):
        return
    actor, key, clean_name = request.actor, request.key, request.name
    subscriber = repo.get_by_email_key(session, key)
    if subscriber is None:
        subscriber = _insert_subscriber(session, request.address, key, clean_name)
    elif clean_name and not subscriber.name:
        subscriber.name = clean_name
    sub = repo.subscription(session, subscriber.id, newsletter.id)
    if sub is not None and sub.status == "active":
        return
    now = utcnow()
    recent = timedelta(minutes=settings.confirm_resend_minutes)
    if sub is not None and sub.status == "pending":
        if sub.confirmation_sent_at and now - sub.confirmation_sent_at < recent:
            return
        session.add(ConsentEvent(subscriber_id=subscriber.id, newsletter_id=newsletter.id,
                                 action="signup", source=actor.source, ip=actor.ip,
                                 user_agent=actor.user_agent))
    else:
        sub = set_status(session, subscriber, newsletter, "pending", actor)
    sub.confirmation_sent_at = now
    session.flush()
    counters.add({"signups": 1}, session=session)
    enqueue_after_commit(session, "missive.send_confirmations", [sub.id])


def record_sign_up_apart(request: SignupRequest) -> None:
    """`record_sign_up` in a transaction of its own: run after the answer is sent."""
    try:
        with session_scope() as session:
            record_sign_up(session, request)
    except Exception:
        # The reader was answered already; the log is the only place this can go.
        log.exception("could not record the sign-up of %s", request.address)


def sign_up(
    session: Session, *, slug: str, email: str, name: str | None, actor: Actor
) -> None:
    """Check and record a sign-up at once (for callers that need no constant-time answer).

    Raises Invalid for bad input and TooManyRequests past the limits; otherwise returns nothing,
    whether the address was new, pending, active or suppressed.
    """
    record_sign_up(session, accept_sign_up(session, slug=slug, email=email, name=name,
                                           actor=actor))


def _insert_subscriber(session: Session, address: str, key: str, name: str) -> Subscriber:
    # Two sign-ups of one new address at once: the second finds the first's row.
    session.execute(
        dialect_insert(session, Subscriber)
        .values(email=address, email_key=key, name=name, attributes={},
                created_at=utcnow(), updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["email_key"])
    )
    subscriber = repo.get_by_email_key(session, key)
    assert subscriber is not None
    return subscriber


class Outcome(Enum):
    CONFIRMED = "confirmed"
    ALREADY = "already"
    STALE = "stale"  # signed before the reader unsubscribed, or the address is suppressed
    EXPIRED = "expired"
    INVALID = "invalid"
    TEST = "test"  # the link of a test copy: shown, never acted upon


@dataclass
class TokenView:
    outcome: Outcome
    newsletter: Newsletter | None = None
    email: str | None = None


def check_confirm(session: Session, token: str) -> TokenView:
    """What a confirmation link would do, changing nothing (link scanners fetch GETs)."""
    try:
        sub, _ = _load(session, "confirm", token, _confirm_max_age())
    except TokenExpired:
        return TokenView(Outcome.EXPIRED)
    except TokenInvalid:
        return TokenView(Outcome.INVALID)
    outcome = Outcome.ALREADY if sub.status == "active" else Outcome.CONFIRMED
    return TokenView(outcome, sub.newsletter, sub.subscriber.email)


def confirm(session: Session, token: str, actor: Actor) -> TokenView:
    """Confirm the subscription behind `token`. Confirming twice is harmless."""
    try:
        sub, signed_at = _load(session, "confirm", token, _confirm_max_age())
    except TokenExpired:
        return TokenView(Outcome.EXPIRED)
    except TokenInvalid:
        return TokenView(Outcome.INVALID)
    view = TokenView(Outcome.CONFIRMED, sub.newsletter, sub.subscriber.email)
    if sub.status == "active":
        view.outcome = Outcome.ALREADY
        return view
    if (sub.unsubscribed_at and sub.unsubscribed_at > signed_at) or is_suppressed(
        session, sub.subscriber.email_key
    ):
        view.outcome = Outcome.STALE
        return view
    sub.status = "active"
    sub.confirmed_at = utcnow()
    sub.unsubscribed_at = None
    session.add(ConsentEvent(subscriber_id=sub.subscriber_id, newsletter_id=sub.newsletter_id,
                             action="confirm", source=actor.source, ip=actor.ip,
                             user_agent=actor.user_agent))
    session.flush()
    enqueue_after_commit(session, "missive.send_welcome", sub.id)
    return view


def _confirm_max_age() -> int:
    return get_settings().confirm_ttl_hours * 3600


def _unsubscribe_target(session: Session, token: str) -> Subscription | None:
    """The subscription an unsubscribe token names (it never expires), or None if forged."""
    try:
        return _load(session, "unsubscribe", token, None)[0]
    except TokenInvalid:
        return None


def check_unsubscribe(session: Session, token: str) -> TokenView:
    """What an unsubscribe link points at, changing nothing."""
    sub = _unsubscribe_target(session, token)
    if sub is None:
        return _test_view(session, token) or TokenView(Outcome.INVALID)
    outcome = Outcome.ALREADY if sub.status == "unsubscribed" else Outcome.CONFIRMED
    return TokenView(outcome, sub.newsletter, sub.subscriber.email)


def check_undo_open(session: Session, token: str) -> bool:
    """True if the unsubscribe behind `token` may still be undone, changing nothing."""
    sub = _unsubscribe_target(session, token)
    return sub is not None and sub.status == "unsubscribed" and undo_open(sub)


def unsubscribe(session: Session, token: str, actor: Actor) -> TokenView:
    """Unsubscribe the reader behind `token` from its newsletter, at once."""
    sub = _unsubscribe_target(session, token)
    if sub is None:
        return _test_view(session, token) or TokenView(Outcome.INVALID)
    view = TokenView(Outcome.CONFIRMED, sub.newsletter, sub.subscriber.email)
    if sub.status == "unsubscribed":
        view.outcome = Outcome.ALREADY
        return view
    set_status(session, sub.subscriber, sub.newsletter, "unsubscribed", actor)
    return view


def undo_open(sub: Subscription) -> bool:
    """True while an unsubscribe may still be undone from its link."""
    window = timedelta(hours=get_settings().unsubscribe_undo_hours)
    return sub.unsubscribed_at is not None and utcnow() - sub.unsubscribed_at <= window


def resubscribe(session: Session, token: str, actor: Actor) -> TokenView:
    """Undo an unsubscribe from its own link, within the undo window (the reader changed
    their mind at once). Later the link is only proof of an old address: EXPIRED, and the
    reader signs up again with double opt-in."""
    sub = _unsubscribe_target(session, token)
    if sub is None:
        return _test_view(session, token) or TokenView(Outcome.INVALID)
    view = TokenView(Outcome.CONFIRMED, sub.newsletter, sub.subscriber.email)
    if is_suppressed(session, sub.subscriber.email_key):
        view.outcome = Outcome.STALE
        return view
    if sub.status == "unsubscribed" and not undo_open(sub):
        view.outcome = Outcome.EXPIRED
        return view
    if sub.status != "active":
        set_status(session, sub.subscriber, sub.newsletter, "active", actor)
    return view


def unsubscribe_everywhere(session: Session, token: str, actor: Actor) -> TokenView:
    """Leave every newsletter this reader is on."""
    sub = _unsubscribe_target(session, token)
    if sub is None:
        return _test_view(session, token) or TokenView(Outcome.INVALID)
    for other in list(sub.subscriber.subscriptions):
        if other.status != "unsubscribed":
            set_status(session, sub.subscriber, other.newsletter, "unsubscribed", actor)
    return TokenView(Outcome.ALREADY, sub.newsletter, sub.subscriber.email)


# --- mails, sent by worker tasks -------------------------------------------------------------


def deliver_confirmation(session: Session, subscription_id: int, transport: Transport) -> bool:
    """Mail a confirmation link to a still-pending subscription; True if one was sent.

    A task may run twice (late acks): a subscription mailed within the resend window is
    skipped, so a redelivered task sends nothing new.
    """
    settings = get_settings()
    sub = session.get(Subscription, subscription_id, with_for_update=True)
    if sub is None or sub.status != "pending" or is_suppressed(session, sub.subscriber.email_key):
        return False
    if _mailed_since(session, sub, "confirmation-mailed",
                     utcnow() - timedelta(minutes=settings.confirm_resend_minutes)):
        return False
    url = f"{settings.base_url}/confirm/{confirm_token(sub)}"
    # Whoever signed the address up chose the name: until its owner confirms, none of that
    # text reaches them (no display name, no greeting by name), so the form relays nothing.
    sent = _mail(
        session, sub, transport, kind="confirmation", template="confirm",
        subject=f"Confirm your subscription to {sub.newsletter.name}",
        context={"confirm_url": url, "ttl_hours": settings.confirm_ttl_hours},
        display_name=False,
    )
    if not sent:
        return False
    session.add(ConsentEvent(subscriber_id=sub.subscriber_id, newsletter_id=sub.newsletter_id,
                             action="confirmation-mailed", source="worker"))
    return True


def _mailed_since(session: Session, sub: Subscription, action: str, since: datetime) -> bool:
    # The consent log doubles as proof of what was mailed when.
    return session.scalars(
        select(ConsentEvent.id).where(
            ConsentEvent.subscriber_id == sub.subscriber_id,
            ConsentEvent.newsletter_id == sub.newsletter_id,
            ConsentEvent.action == action,
            ConsentEvent.created_at >= since,
        )
    ).first() is not None


def deliver_welcome(session: Session, subscription_id: int, transport: Transport) -> bool:
    """Mail the welcome note once to a newly active subscription."""
    settings = get_settings()
    sub = session.get(Subscription, subscription_id, with_for_update=True)
    if sub is None or sub.status != "active" or is_suppressed(session, sub.subscriber.email_key):
        return False
    if sub.confirmed_at and _mailed_since(session, sub, "welcome-mailed", sub.confirmed_at):
        return False
    unsubscribe_url, mailto = unsubscribe_links(unsubscribe_token(sub))
    sent = _mail(
        session, sub, transport, kind="welcome", template="welcome",
        subject=f"Welcome to {sub.newsletter.name}",
        context={"subscriber": sub.subscriber, "unsubscribe_url": unsubscribe_url,
                 "archive_url": f"{settings.base_url}/archive/{sub.newsletter.slug}"},
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>, <{mailto}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    if not sent:
        return False
    session.add(ConsentEvent(subscriber_id=sub.subscriber_id, newsletter_id=sub.newsletter_id,
                             action="welcome-mailed", source="worker"))
    return True


def _mail(session: Session, sub: Subscription, transport: Transport, *, kind: str,
          template: str, subject: str, context: dict[str, Any],
          headers: dict[str, str] | None = None, display_name: bool = True) -> bool:
    """Build one transactional mail to a subscription and send it the one way out (stored,
    VERP, standard headers, DKIM); False when the server refused it for good. Without
    `display_name` the To: header carries the bare address."""
    newsletter = sub.newsletter
    domain = newsletter.from_email.rpartition("@")[2]
    row = outbound.record(session, kind=kind, email=sub.subscriber.email,
                          email_key=sub.subscriber.email_key, domain=domain,
                          newsletter_id=newsletter.id, subscriber_id=sub.subscriber_id,
                          subscription_id=sub.id)
    message = compose.build(
        template=template, newsletter=newsletter,
        to=compose.recipient(sub.subscriber.name if display_name else "", sub.subscriber.email),
        subject=subject,
        context=context, message_id=row.message_id,
        headers={**outbound.standard_headers(kind=kind, name=newsletter.name,
                                             slug=newsletter.slug, domain=domain,
                                             campaign=kind), **(headers or {})},
    )
    return outbound.send(session, row, message, transport)
