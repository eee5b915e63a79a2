"""Double opt-in: sign-up, the confirmation mail, confirming, the welcome mail, leaving.

Whatever the state of an address, `sign_up` answers the same way, so the form never reveals
who is subscribed. Mails go out from worker tasks enqueued after the sign-up commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ratelimit
from app.config import get_settings
from app.db import dialect_insert, session_scope, utcnow
from app.errors import Invalid, TooManyRequests
from app.mail import compose, outbound
from app.mail.transport import Transport
from app.newsletters import service as newsletters
from app.newsletters.models import Newsletter
from app.ops import counters
from app.queue import enqueue_after_commit
from app.security import TokenExpired, TokenInvalid, sign
from app.subscribers import repository as repo
from app.subscribers.models import ConsentEvent, Subscriber, Subscription
from app.subscribers.service import Actor, is_suppressed, set_status
from app.subscribers.unsubscribe import (
    Outcome,
    TokenView,
    fingerprint,
    load_subscription,
    unsubscribe_links,
    unsubscribe_target,
    unsubscribe_token,
    view_of_test_copy,
)
from app.validation import MAX_EMAIL, MAX_NAME, clean_text, email_key, has_control, normalise_email

log = logging.getLogger(__name__)


def confirm_token(sub: Subscription) -> str:
    return sign("confirm", {"s": sub.id, "a": fingerprint(sub.subscriber.email_key)})


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
        raise TooManyRequests("There have been too many sign-ups from your network just now. "
                              "Please wait a minute and try again.")
    if not ratelimit.hit(
        f"signup-addr:{key}", limit=settings.signup_address_per_hour, per_seconds=3600
    ):
        raise TooManyRequests("This email address has been signed up too often in the last hour. "
                              "Please try again later.")
    return SignupRequest(newsletter.id, address, key, clean_name, actor)


# What a reader is told about what they typed into the sign-up form (and what the form's JSON
# answer says in `detail`): words for people, one message per field.
ENTER_EMAIL = "Please enter your email address."
EMAIL_AS_TEXT = "Please enter your email address as text, like name@example.org."
NOT_AN_EMAIL = ("That doesn't look like an email address \N{EM DASH} please check it. "
                "An address looks like name@example.org.")
EMAIL_TOO_LONG = (f"That email address is too long \N{EM DASH} an address has at most "
                  f"{MAX_EMAIL} characters. Please check it.")
NAME_AS_TEXT = "Please enter your name as text (or leave it empty)."
NAME_ONE_LINE = "Please write your name on one line, without special characters."
NAME_TOO_LONG = f"That name is too long \N{EM DASH} please keep it to {MAX_NAME} characters."


def reader_problems(email: Any, name: Any) -> dict[str, str]:
    """What is wrong with a sign-up's email and name, by field, in a reader's words; empty
    when both pass `normalise_email` and `clean_text` (which `accept_sign_up` applies)."""
    problems: dict[str, str] = {}
    try:
        normalise_email(email)
    except Invalid:
        if email is None or (isinstance(email, str) and not email.strip()):
            problems["email"] = ENTER_EMAIL
        elif not isinstance(email, str):
            problems["email"] = EMAIL_AS_TEXT
        elif len(email.strip()) > MAX_EMAIL:
            problems["email"] = EMAIL_TOO_LONG
        else:
            problems["email"] = NOT_AN_EMAIL
    try:
        clean_text(name, field="name", max_length=MAX_NAME)
    except Invalid:
        if not isinstance(name, str):
            problems["name"] = NAME_AS_TEXT
        elif has_control(name):
            problems["name"] = NAME_ONE_LINE
        else:
            problems["name"] = NAME_TOO_LONG
    return problems


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


def check_confirm(session: Session, token: str) -> TokenView:
    """What a confirmation link would do, changing nothing (link scanners fetch GETs)."""
    try:
        sub, _ = load_subscription(session, "confirm", token, _confirm_max_age())
    except TokenExpired:
        return _expired(session, token)
    except TokenInvalid:
        return TokenView(Outcome.INVALID)
    outcome = Outcome.ALREADY if sub.status == "active" else Outcome.CONFIRMED
    return TokenView(outcome, sub.newsletter, sub.subscriber.email)


def confirm(session: Session, token: str, actor: Actor) -> TokenView:
    """Confirm the subscription behind `token`. Confirming twice is harmless."""
    try:
        sub, signed_at = load_subscription(session, "confirm", token, _confirm_max_age())
    except TokenExpired:
        return _expired(session, token)
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


def _expired(session: Session, token: str) -> TokenView:
    """An expired confirmation link: genuine, so it still names its newsletter, where the
    page offers to sign up again."""
    try:
        sub, _ = load_subscription(session, "confirm", token, None)
    except TokenInvalid:
        return TokenView(Outcome.EXPIRED)
    return TokenView(Outcome.EXPIRED, sub.newsletter)


def _confirm_max_age() -> int:
    return get_settings().confirm_ttl_hours * 3600


def check_unsubscribe(session: Session, token: str) -> TokenView:
    """What an unsubscribe link points at, changing nothing."""
    sub = unsubscribe_target(session, token)
    if sub is None:
        return view_of_test_copy(session, token) or TokenView(Outcome.INVALID)
    outcome = Outcome.ALREADY if sub.status == "unsubscribed" else Outcome.CONFIRMED
    return TokenView(outcome, sub.newsletter, sub.subscriber.email)


def check_undo_open(session: Session, token: str) -> bool:
    """True if the unsubscribe behind `token` may still be undone, changing nothing."""
    sub = unsubscribe_target(session, token)
    return sub is not None and sub.status == "unsubscribed" and undo_open(sub)


def undo_open(sub: Subscription) -> bool:
    """True while an unsubscribe may still be undone from its link."""
    window = timedelta(hours=get_settings().unsubscribe_undo_hours)
    return sub.unsubscribed_at is not None and utcnow() - sub.unsubscribed_at <= window


def resubscribe(session: Session, token: str, actor: Actor) -> TokenView:
    """Undo an unsubscribe from its own link, within the undo window (the reader changed
    their mind at once). Later the link is only proof of an old address: EXPIRED, and the
    reader signs up again with double opt-in."""
    sub = unsubscribe_target(session, token)
    if sub is None:
        return view_of_test_copy(session, token) or TokenView(Outcome.INVALID)
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
