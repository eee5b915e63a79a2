"""The drain loop a worker runs for a send: claim ledger rows, mail them, record what happened.

The database is the truth. A worker claims a batch of pending rows (`FOR UPDATE SKIP LOCKED`, so
any number of workers share a send without overlap) under a lease, then works through it in
windows: re-check the readers, mark the window started, hand it to SMTP, record the outcomes in
bulk. A worker that vanishes leaves claimed rows behind; when their lease runs out, rows whose
window never started go back to `pending`, and rows whose SMTP exchange had begun become
`unknown` — possibly delivered, so never resent automatically.

This module is an edge: it runs for minutes and commits as it goes, one short transaction per
step, so that progress survives a crash.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings
from app.db import utcnow
from app.mail.pipeline import Outcome, Outgoing
from app.mail.transport import DeliveryError, Transport
from app.sending import messages, throughput
from app.sending.models import Delivery, Send
from app.subscribers.models import Subscriber, Subscription, Suppression

log = logging.getLogger("missive.sending")


class BatchSender(Protocol):
    def send_many(self, batch: Sequence[Outgoing]) -> list[Outcome]: ...

    def close(self) -> None: ...


class TransportBatcher:
    """`send_many` over a one-message transport (Maildir in the embedded default)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def send_many(self, batch: Sequence[Outgoing]) -> list[Outcome]:
        out = []
        for item in batch:
            try:
                self.transport.send(item.envelope_from, [item.recipient], item.message)
            except DeliveryError as exc:
                out.append(Outcome(item.key, exc.code, exc.message))
            else:
                out.append(Outcome(item.key, 250, "OK"))
        return out

    def close(self) -> None:
        self.transport.close()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


@dataclass
class DrainStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    unknown: int = 0
    windows: int = 0
    stopped_because: str = ""


@dataclass
class _Row:
    id: int
    subscriber_id: int
    subscription_id: int
    attempts: int


def recover_expired_leases(session: Session, send_id: int | None = None) -> tuple[int, int]:
    """Release rows whose worker vanished: never started → pending, started → unknown.

    Returns (returned to pending, marked unknown).
    """
    now = utcnow()
    base = and_(Delivery.status == "claimed", Delivery.lease_until < now)
    if send_id is not None:
        base = and_(base, Delivery.send_id == send_id)
    unknown = _rowcount(session.execute(
        update(Delivery)
        .where(base, Delivery.started_at.is_not(None))
        .values(status="unknown", claimed_by=None, lease_until=None,
                smtp_reply="worker stopped during the SMTP exchange; outcome unknown")
        .execution_options(synchronize_session=False)
    ))
    pending = _rowcount(session.execute(
        update(Delivery)
        .where(base, Delivery.started_at.is_(None))
        .values(status="pending", claimed_by=None, lease_until=None)
        .execution_options(synchronize_session=False)
    ))
    return pending, unknown


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class Drainer:
    """Drains one send from one worker process until nothing is left for it to do."""

    def __init__(
        self,
        send_id: int,
        *,
        sessions: sessionmaker[Session],
        sender: BatchSender,
        settings: Settings | None = None,
        worker: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.send_id = send_id
        self.sessions = sessions
        self.sender = sender
        self.settings = settings or get_settings()
        self.worker = worker or worker_name()
        self.sleep = sleep
        self.stats = DrainStats()
        # Claims walk pending rows upwards from here, so each claim starts where the last one
        # ended instead of stepping over every row already sent (dead index entries until
        # vacuum). Back to 0 for a full pass when nothing is left above it (retries, rows
        # handed back by other workers).
        self._floor = 0

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> DrainStats:
        with self.sessions.begin() as session:
            recover_expired_leases(session, self.send_id)
        while True:
            state = self._state()
            if state is None or state.status != "running":
                self.stats.stopped_because = state.status if state else "missing"
                return self.stats
            wait = _seconds_until(state.throttle_until)
            if wait > 0:
                self.sleep(min(wait, 5.0))
                continue
            rows = self._claim()
            if rows:
                self._floor = rows[-1].id
                if not self._work(rows):
                    return self.stats
                continue
            if self._floor:
                self._floor = 0
                continue
            if not self._finish_or_wait():
                self.stats.stopped_because = "others are finishing it"
                return self.stats

    def _state(self) -> Send | None:
        with self.sessions() as session:
            return session.get(Send, self.send_id)

    def _claim(self) -> list[_Row]:
        s = self.settings
        now = utcnow()
        with self.sessions.begin() as session:
            ids = (
                select(Delivery.id)
                .where(
                    Delivery.send_id == self.send_id,
                    Delivery.status == "pending",
                    Delivery.id > self._floor,
                    or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
                )
                .order_by(Delivery.id)
                .limit(s.send_batch)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            result = session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(
                    status="claimed",
                    claimed_by=self.worker,
                    lease_until=now + timedelta(seconds=s.send_lease_seconds),
                    started_at=None,
                    attempts=Delivery.attempts + 1,
                )
                .returning(Delivery.id, Delivery.subscriber_id, Delivery.subscription_id,
                           Delivery.attempts)
                .execution_options(synchronize_session=False)
            )
            rows = [_Row(*r) for r in result]
        rows.sort(key=lambda r: r.id)
        return rows

    def _finish_or_wait(self) -> bool:
        """Nothing claimable: finish the send, wait for retries due soon, or leave. True to
        keep draining."""
        now = utcnow()
        with self.sessions.begin() as session:
            recovered = recover_expired_leases(session, self.send_id)
            if any(recovered):
                return True
            open_rows = {
                status: count for status, count in session.execute(
                    select(Delivery.status, func.count())
                    .where(Delivery.send_id == self.send_id,
                           Delivery.status.in_(("pending", "claimed")))
                    .group_by(Delivery.status)
                )
            }
            if not open_rows:
                finish(session, self.send_id)
                self.stats.stopped_because = "done"
                return False
            if not open_rows.get("pending"):
                return False  # other workers hold the rest under lease
            due = session.scalar(
                select(func.min(Delivery.next_attempt_at)).where(
                    Delivery.send_id == self.send_id, Delivery.status == "pending"
                )
            )
        self.sleep(min(max(_seconds_until(due, now), 0.05), 5.0))
        return True

    # -- one claimed batch -----------------------------------------------------------------

    def _work(self, rows: list[_Row]) -> bool:
        """Mail a claimed batch window by window. False when the send stopped meanwhile."""
        s = self.settings
        window = s.send_window
        if s.send_rate > 0:
            window = max(1, min(window, int(s.send_rate)))
        try:
            prebuilt = messages.prebuilt_for_send(self.sessions, self.send_id)
        except Exception as exc:  # noqa: BLE001  (any: the rows fail with it, the send goes on)
            log.exception("send %s: the issue cannot be built", self.send_id)
            self._record([_unbuildable(r.id, exc) for r in rows], {r.id: r for r in rows})
            return True
        claimed_at = time.monotonic()
        for start in range(0, len(rows), window):
            if time.monotonic() - claimed_at > s.send_lease_seconds / 2:
                self._extend_lease(rows[start:])
                claimed_at = time.monotonic()
            part = rows[start:start + window]
            state = self._state()
            throttled = state is not None and _seconds_until(state.throttle_until) > 0
            if state is None or state.status != "running" or throttled:
                self._release(rows[start:])
                return state is not None and state.status == "running"
            throughput.acquire(len(part))
            outgoing, broken = self._prepare(part, prebuilt)
            if broken:
                self._record(broken, {r.id: r for r in part})
            if not outgoing:
                continue
            outcomes = self.sender.send_many(outgoing)
            self._record(outcomes, {r.id: r for r in part})
            self.stats.windows += 1
        return True

    def _prepare(self, part: list[_Row], prebuilt: messages.Prebuilt
                 ) -> tuple[list[Outgoing], list[Outcome]]:
        """Re-check each reader, mark the eligible ones started, and build their copies; a copy
        that cannot be built is a failed outcome with the reason."""
        ids = [r.id for r in part]
        now = utcnow()
        with self.sessions.begin() as session:
            readers = session.execute(
                select(Delivery.id, Subscriber.email, Subscriber.name, Subscriber.email_key,
                       Subscription.id, Subscription.status, Suppression.id)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .join(Subscription, Subscription.id == Delivery.subscription_id)
                .outerjoin(Suppression, Suppression.email_key == Subscriber.email_key)
                .where(Delivery.id.in_(ids))
            ).all()
            eligible = [r for r in readers if r[5] == "active" and r[6] is None]
            gone = set(ids) - {r[0] for r in eligible}
            if gone:
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(gone), Delivery.claimed_by == self.worker)
                    .values(status="skipped", claimed_by=None, lease_until=None,
                            smtp_reply="unsubscribed or suppressed before sending")
                    .execution_options(synchronize_session=False)
                )
                self.stats.skipped += len(gone)
            if eligible:
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_([r[0] for r in eligible]),
                           Delivery.claimed_by == self.worker)
                    .values(started_at=now)
                    .execution_options(synchronize_session=False)
                )
        built: list[Outgoing] = []
        broken: list[Outcome] = []
        for r in sorted(eligible, key=lambda r: r[0]):
            try:
                built.append(messages.outgoing(prebuilt, delivery_id=r[0], email=r[1],
                                               name=r[2], email_key=r[3], subscription_id=r[4]))
            except Exception as exc:  # noqa: BLE001  (any: this row fails, the rest go on)
                log.warning("delivery %s: the message cannot be built: %s", r[0], exc)
                broken.append(_unbuildable(r[0], exc))
        return built, broken

    def _record(self, outcomes: list[Outcome], rows: dict[int, _Row]) -> None:
        s = self.settings
        now = utcnow()
        sent = [o.key for o in outcomes if o.sent]
        unknown = [o for o in outcomes if not o.sent and o.unknown]
        throttled = [o for o in outcomes if not o.sent and not o.unknown and o.throttled]
        temporary = [o for o in outcomes
                     if not o.sent and not o.unknown and not o.throttled and o.temporary]
        permanent = [o for o in outcomes if not (o.sent or o.unknown or o.throttled
                                                 or o.temporary)]
        retry, give_up = [], []
        for o in temporary:
            attempts = rows[o.key].attempts
            if attempts >= s.send_max_attempts:
                give_up.append(o)
            else:
                delay = min(s.send_retry_seconds * 2 ** (attempts - 1), 6 * 3600)
                retry.append({"id": o.key, "status": "pending", "claimed_by": None,
                              "lease_until": None, "started_at": None, "smtp_code": o.code,
                              "smtp_reply": o.reply[:1000],
                              "next_attempt_at": now + timedelta(seconds=delay)})
        with self.sessions.begin() as session:
            if sent:
                session.execute(
                    update(Delivery).where(Delivery.id.in_(sent))
                    .values(status="sent", sent_at=now, smtp_code=250, claimed_by=None,
                            lease_until=None, smtp_reply=None)
                    .execution_options(synchronize_session=False)
                )
            failed = [
                {"id": o.key, "status": "failed", "claimed_by": None, "lease_until": None,
                 "smtp_code": o.code, "smtp_reply": o.reply[:1000]}
                for o in permanent + give_up
            ]
            if failed:
                session.execute(update(Delivery), failed)
                # 5xx replies are bounces at our door: the bounce policy decides what follows.
                from app.bounces.service import record_smtp_failures

                record_smtp_failures(session, [(o.key, o.code, o.reply)
                                               for o in permanent + give_up if o.code >= 400])
            if retry:
                session.execute(update(Delivery), retry)
            if unknown:
                session.execute(update(Delivery), [
                    {"id": o.key, "status": "unknown", "claimed_by": None, "lease_until": None,
                     "smtp_code": o.code or None, "smtp_reply": o.reply[:1000]}
                    for o in unknown
                ])
            if throttled:
                # The server pushed back: these go back untouched, the attempt not counted.
                session.execute(
                    update(Delivery).where(Delivery.id.in_([o.key for o in throttled]))
                    .values(status="pending", claimed_by=None, lease_until=None,
                            started_at=None, attempts=Delivery.attempts - 1)
                    .execution_options(synchronize_session=False)
                )
            self._update_send(session, outcomes, sent, throttled,
                              len(permanent) + len(give_up) + len(retry))
        self.stats.sent += len(sent)
        self.stats.failed += len(permanent) + len(give_up)
        self.stats.retried += len(retry)
        self.stats.unknown += len(unknown)

    def _update_send(self, session: Session, outcomes: list[Outcome], sent: list[int],
                     throttled: list[Outcome], failures: int) -> None:
        s = self.settings
        now = utcnow()
        send = session.get(Send, self.send_id, with_for_update=True)
        if send is None:
            return
        send.last_activity_at = now
        if throttled:
            send.throttle_level += 1
            pause = min(2 ** send.throttle_level, 30)
            send.throttle_until = now + timedelta(seconds=pause)
            last = throttled[-1]
            log.warning("send %s: SMTP pushed back (%s %s); waiting %ss", self.send_id,
                        last.code, last.reply, pause)
            outage = self._outage_started(send, now)
            if (now - outage).total_seconds() > s.send_max_outage_seconds and send.status == \
                    "running":
                send.status = "paused"
                send.pause_reason = (f"paused: the SMTP server has refused or been unreachable "
                                     f"since {outage:%Y-%m-%d %H:%M:%S} UTC (last reply: "
                                     f"{last.code} {last.reply[:200]})")
        elif sent:
            send.throttle_level = 0
            send.throttle_until = None
        if sent:
            send.last_success_at = now
        if sent:
            # Count only the failures after the last success in this window.
            trailing = 0
            for o in reversed(outcomes):
                if o.sent:
                    break
                trailing += 1
            send.consecutive_failures = trailing
        elif failures:
            send.consecutive_failures += failures
        if send.consecutive_failures >= s.send_pause_after_failures and send.status == "running":
            worst = next((o for o in reversed(outcomes) if not o.sent), None)
            send.status = "paused"
            send.pause_reason = (
                f"paused itself after {send.consecutive_failures} consecutive failed deliveries"
                + (f" (last reply: {worst.code} {worst.reply[:200]})" if worst else "")
            )
            log.error("send %s %s", self.send_id, send.pause_reason)

    def _outage_started(self, send: Send, now: datetime) -> datetime:
        # The last success ends an outage; without one, the send's start does.
        return send.last_success_at or send.started_at or now

    def _extend_lease(self, rows: list[_Row]) -> None:
        """A slow batch (a throttled server, a low rate cap) keeps its rows."""
        until = utcnow() + timedelta(seconds=self.settings.send_lease_seconds)
        with self.sessions.begin() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_([r.id for r in rows]), Delivery.status == "claimed",
                       Delivery.claimed_by == self.worker)
                .values(lease_until=until)
                .execution_options(synchronize_session=False)
            )

    def _release(self, rows: list[_Row]) -> None:
        """Hand back claimed rows that were not started (the send paused or was throttled)."""
        with self.sessions.begin() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_([r.id for r in rows]), Delivery.status == "claimed",
                       Delivery.claimed_by == self.worker, Delivery.started_at.is_(None))
                .values(status="pending", claimed_by=None, lease_until=None,
                        attempts=Delivery.attempts - 1)
                .execution_options(synchronize_session=False)
            )


# Not an SMTP reply code: the copy could not be built. A permanent failure of the row (neither
# retried nor throttled), and never a bounce (the bounce policy looks at codes of 400 and up).
UNBUILDABLE = 1


def _unbuildable(delivery_id: int, exc: Exception) -> Outcome:
    return Outcome(key=delivery_id, code=UNBUILDABLE,
                   reply=f"the message could not be built: {exc}"[:1000])


def finish(session: Session, send_id: int) -> bool:
    """Mark a running send done once no row is pending or claimed; its issue becomes sent."""
    from app.issues.models import Issue

    now = utcnow()
    done = _rowcount(session.execute(
        update(Send).where(Send.id == send_id, Send.status == "running")
        .values(status="done", finished_at=now)
        .execution_options(synchronize_session=False)
    ))
    if done:
        issue_id = session.scalar(select(Send.issue_id).where(Send.id == send_id))
        session.execute(
            update(Issue).where(Issue.id == issue_id)
            .values(status="sent", sent_at=now)
            .execution_options(synchronize_session=False)
        )
    return bool(done)


def _seconds_until(when: datetime | None, now: datetime | None = None) -> float:
    if when is None:
        return 0.0
    return (when - (now or utcnow())).total_seconds()
