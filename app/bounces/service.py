"""The bounce policy, in one place, whatever the way in (raw message, webhook, SMTP reply).

Every event carries a reason (app.bounces.reasons) and the kind that follows from it:

- hard (userunknown, hostunknown, hasmoved, suspend, when permanent): the delivery is marked
  bounced, the address suppressed as `bounced`;
- soft (mailboxfull, expired, exceedlimit, systemerror, networkerror, toomanyconn, undefined):
  counted; `bounce_soft_limit` of them within `bounce_soft_days` suppress the address (older
  ones no longer count);
- complaint (feedback): the reader leaves every newsletter and the address is suppressed as
  `complained`; a send whose complaints pass `complaint_block_rate` blocks its newsletter's next
  send until an editor acknowledges it;
- policy (a refusal of the sender, its IP or its content: blocked, rejected, norelaying,
  authfailure, spamdetected, virusdetected, policyviolation, securityerror, contenterror,
  mesgtoobig): nobody is punished; the event is kept and shown to the editor, and
  `bounce_refusal_burst` of them within `bounce_refusal_window_minutes` pause the running send;
- delayed, and ignored (vacation, delivered): not bounces, not recorded.

Dependencies point one way. Readers are reached through `app.subscribers` (the unsubscribe
of a `mailto:` request, the one suppression rule), never through `app.signup`. Sending sits
above this module: the engine hands its SMTP refusals here and the send report reads the
counts here, so this module may use only sending's tables (`app.sending.models`, pausing a
send with `Send.pause`) and never imports the sending service or engine.
tests/test_dependencies.py holds both rules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.parser import BytesHeaderParser
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.bounces import reasons
from app.bounces.events import BounceEvent
from app.bounces.models import BounceRecord
from app.config import get_settings
from app.db import newest_first_page, utcnow
from app.errors import Invalid
from app.mail import verp
from app.mail.models import OutboundMessage
from app.newsletters.models import Newsletter
from app.sending.models import Delivery, Send
from app.subscribers.models import Subscriber, Subscription
from app.subscribers.repository import erased_keys
from app.subscribers.service import Actor, set_status, suppress_key
from app.subscribers.unsubscribe import Outcome, unsubscribe, unsubscribe_token_for

log = logging.getLogger("missive.bounces")

_OUR_MESSAGE_ID = re.compile(r"^(\d{1,18})\.(\d{1,10})\.([A-Za-z0-9_-]{12})@")


@dataclass
class Applied:
    """What ingesting a batch of events did."""

    recorded: int = 0
    ignored: int = 0
    unmatched: int = 0
    actions: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "ignored": self.ignored, "unmatched": self.unmatched,
                "actions": self.actions or []}


_UNSUBSCRIBE_SUBJECT = re.compile(r"^\s*unsubscribe\s+([A-Za-z0-9_.\-]{10,512})\s*$", re.I)


def ingest_message(session: Session, raw: bytes) -> dict[str, Any]:
    """One raw message sent to the bounce address: a report (DSN, ARF) or a reader's
    `mailto:` unsubscribe. 422 when it proves nothing; nothing is changed then."""
    from app.bounces import parse

    subject = BytesHeaderParser().parsebytes(raw[:65536]).get("Subject", "")
    wanted = _UNSUBSCRIBE_SUBJECT.match(str(subject))
    if wanted:
        view = unsubscribe(session, wanted[1], Actor(source="mailto"))
        if view.outcome is Outcome.INVALID:
            raise Invalid("the unsubscribe request carries no valid token; nothing was changed")
        if view.outcome is Outcome.TEST:
            return Applied(actions=["test copy: nothing changed"]).as_dict()
        return Applied(actions=["unsubscribed"]).as_dict()
    try:
        events = parse.parse_message(raw)
    except parse.Unreadable as exc:
        raise Invalid(f"not a readable email message: {exc}") from exc
    except parse.NotABounce as exc:
        raise Invalid(f"not a bounce or complaint report: {exc}") from exc
    applied = ingest(session, events, trusted=False)
    if applied.recorded == 0 and applied.unmatched:
        raise Invalid("the report matches none of our deliveries (its VERP address or "
                      "Message-ID does not check out); nothing was changed")
    return applied.as_dict()


def match_delivery(session: Session, event: BounceEvent) -> Delivery | None:
    """The delivery an event is about: by its VERP address (HMAC checked), else by the
    original Message-ID (its token checked). None when neither proves a delivery."""
    for address in event.verp_addresses:
        delivery_id = verp.delivery_id(address)
        if delivery_id is not None:
            return session.get(Delivery, delivery_id)
    if event.message_id:
        match = _OUR_MESSAGE_ID.match(event.message_id.strip("<> "))
        if match:
            delivery = session.get(Delivery, int(match[1]))
            if delivery is not None and delivery.send_id == int(match[2]):
                email_key = session.scalar(
                    select(Subscriber.email_key).where(Subscriber.id == delivery.subscriber_id))
                token = unsubscribe_token_for(delivery.subscription_id, email_key or "")
                if token[-12:] == match[3]:
                    return delivery
    return None


def match_message(session: Session, event: BounceEvent) -> OutboundMessage | None:
    """The transactional message (confirmation, welcome, test copy) an event is about: by its
    VERP address (HMAC checked), else by its stored Message-ID. None when neither matches."""
    for address in event.verp_addresses:
        record_id = verp.message_record_id(address)
        if record_id is not None:
            return session.get(OutboundMessage, record_id)
    message_id = (event.message_id or "").strip("<> ")
    if message_id.startswith("m") and len(message_id) <= 255:
        return session.scalars(select(OutboundMessage).where(
            OutboundMessage.message_id == message_id)).first()
    return None


def ingest(session: Session, events: Sequence[BounceEvent], *, trusted: bool) -> Applied:
    """Apply events. Untrusted sources (raw messages anyone could mail us) must prove their
    delivery; a trusted, authenticated provider may name just the address."""
    applied = Applied(actions=[])
    for event in events:
        if event.kind in ("delayed", "ignored"):
            applied.ignored += 1
            continue
        delivery = match_delivery(session, event)
        message = match_message(session, event) if delivery is None else None
        if delivery is None and message is None and not (trusted and event.recipient):
            applied.unmatched += 1
            continue
        action = apply(session, event, delivery, message)
        applied.recorded += 1
        assert applied.actions is not None
        applied.actions.append(action)
    return applied


def apply(session: Session, event: BounceEvent, delivery: Delivery | None,
          message: OutboundMessage | None = None) -> str:
    """Record one event about an issue copy (`delivery`), a transactional mail (`message`)
    or just an address, and carry out the policy; the action taken."""
    settings = get_settings()
    subscriber: Subscriber | None = None
    if delivery is not None:
        subscriber = session.get(Subscriber, delivery.subscriber_id)
    elif message is not None:
        # A test copy may go to an address that is nobody's subscription: its key still
        # gets suppressed.
        subscriber = session.scalars(select(Subscriber).where(
            Subscriber.email_key == message.email_key)).first()
    elif event.recipient:
        subscriber = session.scalars(
            select(Subscriber).where(Subscriber.email_key == event.recipient.lower())).first()
    email_key = subscriber.email_key if subscriber else (
        message.email_key if message is not None else
        event.recipient.lower() if event.recipient else None)
    diagnostic = event.diagnostic[:2000]
    if (subscriber is not None and subscriber.email == "") or (
            email_key is not None and erased_keys(session, [email_key])):
        # A late report about an erased reader: it still counts, but their address is not
        # stored again (it stays suppressed under its hash).
        email_key, diagnostic = None, "(about an erased reader)"
    if delivery is not None and _already_recorded(session, delivery.id, event.kind):
        return "duplicate"
    if message is not None and _message_recorded(session, message, event.kind):
        return "duplicate"
    now = utcnow()
    record = BounceRecord(
        occurred_at=event.occurred_at or now,
        delivery_id=delivery.id if delivery else None,
        send_id=delivery.send_id if delivery else None,
        subscriber_id=subscriber.id if subscriber else None,
        email_key=email_key,
        kind=event.kind,
        reason=event.reason,
        status_code=event.status,
        diagnostic=diagnostic,
        source=event.source,
        message_id=(message.message_id if message is not None
                    else (event.message_id or "")[:255] or None),
    )
    session.add(record)
    action = "none"
    if event.kind == "hard":
        action = "suppressed" if email_key else "none"
        if email_key:
            suppress_key(session, email_key, "bounced",
                      f"{event.status or ''} {event.diagnostic}".strip()[:500])
        _mark_delivery(session, delivery, "bounced")
    elif event.kind == "soft":
        action = "counted"
        _mark_delivery(session, delivery, "bounced")
        if email_key:
            session.flush()
            since = now - timedelta(days=settings.bounce_soft_days)
            count = session.scalar(
                select(func.count()).select_from(BounceRecord).where(
                    BounceRecord.email_key == email_key, BounceRecord.kind == "soft",
                    BounceRecord.occurred_at >= since)) or 0
            if count >= settings.bounce_soft_limit:
                suppress_key(session, email_key, "bounced",
                          f"{count} soft bounces within {settings.bounce_soft_days} days")
                action = "suppressed"
    elif event.kind == "complaint":
        action = "unsubscribed"
        if subscriber is not None:
            actor = Actor(source=f"complaint:{event.source}")
            for sub in session.scalars(select(Subscription).where(
                    Subscription.subscriber_id == subscriber.id,
                    Subscription.status != "unsubscribed")):
                set_status(session, subscriber, sub.newsletter, "unsubscribed", actor)
        if email_key:
            suppress_key(session, email_key, "complained", f"complaint via {event.source}")
        if delivery is not None:
            session.flush()
            _check_complaint_rate(session, delivery.send_id)
    elif event.kind == "policy":
        action = "alerted"
        log.warning("the receiving server refused the sender (%s, %s) via %s for %s: %s",
                    event.reason, event.status, event.source, email_key,
                    event.diagnostic[:300])
        # Refusals at our own SMTP door already pause the send in the engine (consecutive
        # failures); the burst rule is for the reports that come back later.
        if delivery is not None and event.source != "smtp":
            session.flush()
            if _pause_on_refusal_burst(session, delivery.send_id):
                action = "alerted, send paused"
    record.action = action
    session.flush()
    return action


def _pause_on_refusal_burst(session: Session, send_id: int) -> bool:
    """Pause a running send that the receiving side keeps refusing; True if it paused now."""
    settings = get_settings()
    since = utcnow() - timedelta(minutes=settings.bounce_refusal_window_minutes)
    refusals = session.scalar(select(func.count()).select_from(BounceRecord).where(
        BounceRecord.send_id == send_id, BounceRecord.kind == "policy",
        BounceRecord.received_at >= since)) or 0
    if refusals < settings.bounce_refusal_burst:
        return False
    send = session.get(Send, send_id)
    if send is None or send.status != "running":
        return False
    reason_counts = counts_by_reason(session, send_id, kind="policy")
    worst = ", ".join(f"{n} {r}" for r, n in sorted(reason_counts.items(), key=lambda x: -x[1]))
    send.pause(
        f"paused: receiving servers refused the sender {refusals} times within "
        f"{settings.bounce_refusal_window_minutes} minutes ({worst}); check the bounces of "
        f"this send, then resume")
    log.error("send %s paused after %s refusals of the sender", send_id, refusals)
    return True


def _already_recorded(session: Session, delivery_id: int, kind: str) -> bool:
    # A report fetched twice (a retried webhook, a message read twice) counts once.
    return session.scalar(select(BounceRecord.id).where(
        BounceRecord.delivery_id == delivery_id, BounceRecord.kind == kind)) is not None


def _message_recorded(session: Session, message: OutboundMessage, kind: str) -> bool:
    return session.scalar(select(BounceRecord.id).where(
        BounceRecord.message_id == message.message_id, BounceRecord.kind == kind,
        BounceRecord.delivery_id.is_(None))) is not None


def _mark_delivery(session: Session, delivery: Delivery | None, status: str) -> None:
    if delivery is not None and delivery.status in ("sent", "unknown"):
        delivery.status = status


def _check_complaint_rate(session: Session, send_id: int) -> None:
    settings = get_settings()
    send = session.get(Send, send_id)
    if send is None:
        return
    complaints = session.scalar(select(func.count()).select_from(BounceRecord).where(
        BounceRecord.send_id == send_id, BounceRecord.kind == "complaint")) or 0
    delivered = session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.send_id == send_id, Delivery.status.in_(("sent", "bounced")))) or 0
    rate = complaints / max(delivered, 1)
    if rate > settings.complaint_block_rate:
        newsletter = send.issue.newsletter
        if newsletter.sending_blocked_by is None:
            newsletter.sending_blocked_by = send.id
            newsletter.sending_blocked_reason = (
                f"send {send.id} drew {complaints} complaints from {delivered} deliveries "
                f"({rate:.2%}, above {settings.complaint_block_rate:.2%}); acknowledge with "
                f"POST /api/v1/sends/{send.id}/acknowledge-complaints before the next send")
            log.error("newsletter %s blocked: %s", newsletter.slug,
                      newsletter.sending_blocked_reason)


def acknowledge_complaints(session: Session, send_id: int) -> Newsletter:
    """An editor has looked at a send's complaints: its newsletter may send again."""
    send = session.get(Send, send_id)
    if send is None:
        from app.errors import NotFound

        raise NotFound(f"no send {send_id}")
    newsletter = send.issue.newsletter
    if newsletter.sending_blocked_by is None:
        raise Invalid(f"{newsletter.slug} is not blocked")
    newsletter.sending_blocked_by = None
    newsletter.sending_blocked_reason = None
    return newsletter


def _refused_at_our_door(code: int, reply: str, recipient: str | None = None) -> BounceEvent:
    """The event for a reply our own SMTP client got: its reason decided like a report's."""
    diagnostic = f"{code} {reply}"[:2000]
    verdict = reasons.decide(status=None, diagnostic=diagnostic)
    return BounceEvent(kind=verdict.kind, recipient=recipient, status=verdict.status,
                       diagnostic=diagnostic, source="smtp", reason=verdict.reason)


def record_smtp_failures(session: Session, failures: Iterable[tuple[int, int, str]]) -> None:
    """5xx replies during a send, handed over by the send engine: (delivery id, code, reply)."""
    for delivery_id, code, reply in failures:
        event = _refused_at_our_door(code, reply)
        if event.kind in ("delayed", "ignored"):
            continue
        delivery = session.get(Delivery, delivery_id)
        if delivery is not None:
            apply(session, event, delivery)
            # The reader's copy was refused at our door: the row stays `failed`.


def record_refusal(session: Session, address: str, code: int, reply: str) -> str:
    """A mail outside a send (confirmation, welcome, test) refused for good at our door: the
    policy applies as for a bounce report naming `address`. The action taken."""
    return apply(session, _refused_at_our_door(code, reply, address.lower()), None)


def record_message_failure(session: Session, message: OutboundMessage, code: int,
                           reply: str) -> str:
    """A transactional mail refused with a 5xx at our door: the bounce policy decides, as for
    an issue copy. The action taken."""
    return apply(session, _refused_at_our_door(code, reply), None, message)


def counts_for_send(session: Session, send_id: int) -> dict[str, Any]:
    """Bounces and complaints recorded against a send, with their counts by reason."""
    rows = session.execute(
        select(BounceRecord.kind, func.count()).where(BounceRecord.send_id == send_id)
        .group_by(BounceRecord.kind))
    found = {kind: int(n) for kind, n in rows}
    return {"hard_bounces": found.get("hard", 0), "soft_bounces": found.get("soft", 0),
            "complained": found.get("complaint", 0), "policy_rejections": found.get("policy", 0),
            "bounce_reasons": counts_by_reason(session, send_id)}


def counts_by_reason(session: Session, send_id: int, *, kind: str | None = None
                     ) -> dict[str, int]:
    """Events recorded against a send, counted by reason (only those that occurred)."""
    stmt = (select(BounceRecord.reason, func.count()).where(BounceRecord.send_id == send_id)
            .group_by(BounceRecord.reason).order_by(BounceRecord.reason))
    if kind is not None:
        stmt = stmt.where(BounceRecord.kind == kind)
    return {reason: int(n) for reason, n in session.execute(stmt)}


def list_page(session: Session, *, kind: str | None, send_id: int | None, email: str | None,
              before_id: int | None, limit: int, reason: str | None = None
              ) -> tuple[list[BounceRecord], int | None]:
    """Bounce records newest first, keyset-paginated by id."""
    stmt = select(BounceRecord)
    if kind:
        stmt = stmt.where(BounceRecord.kind == kind)
    if reason:
        stmt = stmt.where(BounceRecord.reason == reason)
    if send_id:
        stmt = stmt.where(BounceRecord.send_id == send_id)
    if email:
        stmt = stmt.where(BounceRecord.email_key == email.lower())
    return newest_first_page(session, stmt, BounceRecord.id, before_id=before_id, limit=limit)
