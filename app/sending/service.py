"""Starting, scheduling and steering sends. The drain loop itself is in `engine`."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, insert, literal, select, update
from sqlalchemy.orm import Session

from app.bounces.service import counts_for_send
from app.config import get_settings
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.issues import service as issues
from app.newsletters.models import Newsletter
from app.ops import tallies
from app.queue import enqueue_after_commit
from app.sending import ledger
from app.sending.engine import finish
from app.sending.models import Delivery, Send
from app.subscribers.models import Subscriber, Subscription, Suppression
from app.validation import normalise_email

COUNTED = ("sent", "failed", "bounced", "skipped", "pending", "unknown")
MAX_TEST_RECIPIENTS = 20
CADENCE_DAYS = {"weekly": 7, "biweekly": 14}


def get(session: Session, send_id: int) -> Send:
    send = session.get(Send, send_id)
    if send is None:
        raise NotFound(f"no send {send_id}")
    return send


def report(session: Session, send: Send) -> dict[str, Any]:
    """The send with its ledger counted by state (claimed rows count as pending); the counts
    come from the tallies the database keeps, so a send of a million costs no more."""
    counts = tallies.counts(session, "deliveries", send.id)
    out: dict[str, Any] = {
        "id": send.id,
        "issue_id": send.issue_id,
        "status": send.status,
        "total": send.total,
        **{state: int(counts.get(state, 0)) for state in COUNTED},
        "in_flight": int(counts.get("claimed", 0)),
        "scheduled_at": send.scheduled_at,
        "started_at": send.started_at,
        "finished_at": send.finished_at,
        "pause_reason": send.pause_reason,
        "snapshot_seconds": send.snapshot_seconds,
    }
    out["pending"] += out["in_flight"]
    out.update(counts_for_send(session, send.id))
    return out


def next_slot(newsletter: Newsletter, now: datetime | None = None) -> datetime:
    """The newsletter's next cadence slot after `now` (weekly, bi-weekly or monthly)."""
    now = now or utcnow()
    anchor = newsletter.cadence_anchor
    if newsletter.cadence == "none" or anchor is None:
        raise Invalid(f"{newsletter.slug} has no cadence slot: set cadence and cadence_anchor")
    if newsletter.cadence == "monthly":
        slot = anchor
        months = 0
        while slot <= now:
            months += 1
            year, month = divmod(anchor.month - 1 + months, 12)
            try:
                slot = anchor.replace(year=anchor.year + year, month=month + 1)
            except ValueError:  # the 31st in a shorter month: skip that month
                continue
        return slot
    step = timedelta(days=CADENCE_DAYS[newsletter.cadence])
    if anchor > now:
        return anchor
    periods = (now - anchor) // step + 1
    return anchor + step * periods


def schedule(session: Session, issue_id: int, *, at: datetime | None, next_cadence_slot: bool,
             actor: str) -> Send:
    """Send an issue now, at a time, or at its newsletter's next slot. 409 if it has a send."""
    issue = issues.get(session, issue_id)
    existing = session.scalar(select(Send).where(Send.issue_id == issue.id))
    if existing is not None or issue.status in ("sending", "sent"):
        state = existing.status if existing is not None else issue.status
        raise Conflict(f"issue {issue.id} already has a send ({state}); an issue is sent once")
    if issue.newsletter.sending_blocked_by is not None:
        raise Conflict(issue.newsletter.sending_blocked_reason or "sending is blocked")
    problems = [c for c in issues.checks(issue).problems if c.severity == "error"]
    if problems:
        raise Invalid({"message": "the issue fails its pre-send checks",
                       "problems": [p.message for p in problems]})
    if next_cadence_slot:
        if at is not None:
            raise Invalid("give either a time or the next slot, not both")
        at = next_slot(issue.newsletter)
    now = utcnow()
    send = Send(issue=issue, status="scheduled", scheduled_at=at or now, created_by=actor)
    session.add(send)
    session.flush()
    issues.set_status(session, issue, "scheduled", at=at)
    if at is None or at <= now:
        # The snapshot of a large audience takes seconds: a worker takes it, not this request.
        # Should the wake-up be lost, `beat` starts the send as due.
        enqueue_after_commit(session, "missive.start_send", send.id)
    return send


def start(session: Session, send_id: int) -> bool:
    """Begin one scheduled send if it is due and nobody else is beginning it."""
    send = session.scalars(
        select(Send).where(Send.id == send_id, Send.status == "scheduled",
                           Send.scheduled_at <= utcnow())
        .with_for_update(skip_locked=True)
    ).first()
    if send is None:
        return False
    begin(session, send)
    return True


def begin(session: Session, send: Send) -> None:
    """Snapshot the audience into the ledger in one statement and wake the workers."""
    started = time.perf_counter()
    now = utcnow()
    issue = send.issue
    audience = (
        select(
            literal(send.id), Subscription.subscriber_id, Subscription.id,
            literal("pending"), literal(0),
        )
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.newsletter_id == issue.newsletter_id,
            Subscription.status == "active",
            ~exists().where(Suppression.email_key == Subscriber.email_key),
        )
    )
    session.execute(
        insert(Delivery).from_select(
            ["send_id", "subscriber_id", "subscription_id", "status", "attempts"], audience
        )
    )
    send.total = session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.send_id == send.id)
    ) or 0
    send.snapshot_seconds = round(time.perf_counter() - started, 3)
    send.status = "running"
    send.started_at = now
    send.last_activity_at = now
    issues.set_status(session, issue, "sending")
    session.flush()
    kick(session, send.id)


def kick(session: Session, send_id: int) -> None:
    """Enqueue drain wake-ups after commit. Extra ones find nothing to claim and stop."""
    for _ in range(get_settings().send_drain_tasks):
        enqueue_after_commit(session, "missive.drain_send", send_id)


def pause(session: Session, send_id: int, *, reason: str = "paused by an editor") -> Send:
    send = get(session, send_id)
    if send.status not in ("running", "scheduled"):
        raise Conflict(f"send {send.id} is {send.status}; only a running or scheduled send "
                       "can be paused")
    send.pause(reason)
    return send


def resume(session: Session, send_id: int) -> Send:
    send = get(session, send_id)
    if send.status != "paused":
        raise Conflict(f"send {send.id} is {send.status}, not paused")
    send.pause_reason = None
    send.consecutive_failures = 0
    send.throttle_until = None
    send.throttle_level = 0
    if send.started_at is None:
        send.status = "scheduled"
        if send.scheduled_at <= utcnow():
            begin(session, send)
    else:
        send.status = "running"
        send.last_activity_at = utcnow()
        kick(session, send.id)
    return send


def cancel(session: Session, send_id: int) -> Send:
    """Stop a send for good: rows not yet mailed are skipped; the issue keeps what went out."""
    send = get(session, send_id)
    if send.status in ("done", "cancelled"):
        raise Conflict(f"send {send.id} is {send.status} already")
    send.status = "cancelled"
    send.finished_at = utcnow()
    session.execute(
        update(Delivery)
        .where(Delivery.send_id == send.id, Delivery.status == "pending")
        .values(status="skipped", smtp_reply="send cancelled")
        .execution_options(synchronize_session=False)
    )
    issue = send.issue
    if send.started_at is None:
        # Never started: the issue goes back to draft and may be sent later.
        session.delete(send)
        issue.status = "draft"
    elif _any_attempted(session, send.id):
        # Some readers have it: it is published, and it is never sent again.
        issue.status, issue.sent_at = "sent", utcnow()
    else:
        issue.status = "draft"
        session.delete(send)
    session.flush()
    return send


def _any_attempted(session: Session, send_id: int) -> bool:
    """Whether any reader may have been mailed (or is being mailed right now)."""
    return session.scalar(select(exists().where(
        Delivery.send_id == send_id,
        Delivery.status.in_(("sent", "claimed", "unknown", "failed", "bounced")),
    ))) or False


def test_send(session: Session, issue_id: int, addresses: list[str], *,
              marker: bool = True) -> dict[str, Any]:
    """Mail the issue to a few listed addresses only; no ledger row is touched. `marker`
    puts "[Test]" before the subject."""
    issue = issues.get(session, issue_id)
    if not addresses:
        raise Invalid("test_to needs at least one address")
    if len(addresses) > MAX_TEST_RECIPIENTS:
        raise Invalid(f"at most {MAX_TEST_RECIPIENTS} test addresses")
    clean = sorted({normalise_email(a) for a in addresses})
    enqueue_after_commit(session, "missive.send_test", issue.id, clean, marker)
    return {"issue_id": issue.id, "status": "test", "test_to": clean, "test_marker": marker}


# --- for `missive beat` -----------------------------------------------------------------------


def start_due(session: Session) -> list[int]:
    """Begin every scheduled send whose time has come."""
    due = session.scalars(
        select(Send).where(Send.status == "scheduled", Send.scheduled_at <= utcnow())
        .with_for_update(skip_locked=True)
    ).all()
    for send in due:
        begin(session, send)
    return [s.id for s in due]


def rekick_stalled(session: Session) -> list[int]:
    """Wake running sends that have pending rows but no worker progress for a while (a lost
    wake-up, a flushed broker, dead workers), after releasing their expired leases."""
    settings = get_settings()
    quiet_since = utcnow() - timedelta(seconds=settings.send_rekick_seconds)
    stalled = []
    for send in session.scalars(select(Send).where(Send.status == "running")):
        ledger.recover(session, send.id)
        if send.last_activity_at and send.last_activity_at > quiet_since:
            continue
        has_open = session.scalar(select(exists().where(
            Delivery.send_id == send.id, Delivery.status.in_(("pending", "claimed")))))
        if has_open:
            send.last_activity_at = utcnow()
            kick(session, send.id)
            stalled.append(send.id)
        else:
            finish(session, send.id)
    return stalled



# --- `unknown` rows: in flight when a worker lost them, never resent automatically -------------

MAX_UNKNOWN_PAGE = 500


def unknown_deliveries(session: Session, send_id: int, *, cursor: int = 0,
                       limit: int = 100) -> dict[str, Any]:
    """One page of a send's `unknown` rows (who, when the SMTP exchange began, the reply),
    in id order after `cursor`."""
    get(session, send_id)
    page = ledger.unknown_page(session, send_id, after_id=cursor, limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor}


def mark_unknown_delivered(session: Session, send_id: int, ids: list[int] | None, *,
                           actor: str) -> dict[str, Any]:
    """The editor knows these readers got the issue (or accepts the risk that they did not):
    their `unknown` rows (all of the send's when `ids` is None) become `sent`."""
    send = get(session, send_id)
    _check_unknown_ids(session, send, ids)
    changed = ledger.mark_unknown_delivered(session, send.id, ids,
                                            note=f"marked delivered by {actor}")
    return {"changed": changed, "send": report(session, send)}


def resend_unknown(session: Session, send_id: int, ids: list[int] | None, *,
                   actor: str) -> dict[str, Any]:
    """The editor accepts that these readers may get a second copy: their `unknown` rows (all
    of the send's when `ids` is None) go back to `pending` and workers mail them again. A
    finished send runs again for them; a cancelled one refuses (409)."""
    send = get(session, send_id)
    if send.status == "cancelled":
        raise Conflict(f"send {send.id} is cancelled; its unknown rows can only be marked "
                       "delivered")
    _check_unknown_ids(session, send, ids)
    changed = ledger.resend_unknown(session, send.id, ids, note=f"resent by {actor}")
    if changed:
        if send.status == "done":
            send.status = "running"
            send.finished_at = None
        if send.status == "running":
            send.last_activity_at = utcnow()
            kick(session, send.id)
    session.flush()
    return {"changed": changed, "send": report(session, send)}


def _check_unknown_ids(session: Session, send: Send, ids: list[int] | None) -> None:
    if ids is None:
        return
    if not ids:
        raise Invalid("list at least one delivery id, or ask for all")
    wrong = ledger.not_unknown(session, send.id, ids)
    if wrong:
        raise Conflict({"message": f"not unknown deliveries of send {send.id}",
                        "ids": wrong[:100]})
