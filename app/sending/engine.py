"""The drain loop a worker runs for a send: claim ledger rows, mail them, record what happened.

The database is the truth and `ledger` holds its rules and its SQL. A worker claims a batch of
pending rows under a lease and a fresh fencing token, then works through it in windows: re-check
the readers, fence the window (mark started exactly the rows it still holds, in one statement),
hand only those to SMTP, record the outcomes on rows it started. While a batch is in hand a
heartbeat thread renews its lease, so a rate cap or a slow server does not lose it; a worker
paused or cut off past its lease loses its rows to `ledger.recover` (unstarted ones go back to
`pending`, started ones become `unknown`), and its later fences and records change nothing. A
reader is thus mailed at most once unless their row is reported `unknown`.

On SIGTERM (`request_stop`) a drain finishes the window in flight, records it, hands back the
rest of its claim and returns, so a rolling restart leaves no `unknown` rows.

This module is an edge: it runs for minutes and commits as it goes, one short transaction per
step, so that progress survives a crash.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.bounces import service as bounces
from app.config import Settings, get_settings
from app.db import utcnow
from app.mail.pipeline import Outcome, Outgoing
from app.mail.transport import DeliveryError, Transport
from app.sending import ledger, messages, throughput
from app.sending.models import Send

log = logging.getLogger(__name__)

SKIP_REASON = "unsubscribed or suppressed before sending"


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


# --- graceful stop ------------------------------------------------------------------------------


class StopFlag:
    """Set from a signal handler, so it takes no lock (an Event could deadlock there); waits
    poll it in short slices instead."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early once the flag is set; True if it is."""
        deadline = time.monotonic() + seconds
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.1))
        return self._set


STOPPING = StopFlag()
_draining = 0  # drains running in this process (in its main thread)


def request_stop() -> bool:
    """Ask the drain running in this process to finish its window, record it, hand back the
    rest of its claim and return (called on SIGTERM). False when no drain is running."""
    if _draining <= 0:
        return False
    STOPPING.set()
    return True


# --- what a drain did ---------------------------------------------------------------------------


@dataclass
class DrainStats:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    # Put back to `pending` for later: retries after a 4xx, push-backs, claims handed back.
    deferred: int = 0
    skipped: int = 0
    unknown: int = 0
    # Rows whose claim ran out before they were fenced (another worker or `recover` has them).
    lost: int = 0
    windows: int = 0
    seconds: float = 0.0
    stopped_because: str = ""


# --- one window's outcomes, sorted: a pure function -----------------------------------------------


@dataclass(frozen=True)
class OutcomePlan:
    writes: list[ledger.Write]
    sent: list[int] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)  # refused, or out of attempts
    retried: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    throttled: list[Outcome] = field(default_factory=list)


def plan_outcomes(outcomes: Sequence[Outcome], attempts: Mapping[int, int], *,
                  max_attempts: int, retry_seconds: int) -> OutcomePlan:
    """Sort one window's SMTP outcomes into ledger writes, one per distinct new state.

    2xx → sent; a session lost after the final "." → unknown; 421/454/connection trouble →
    pending again, the attempt not counted; other 4xx → retried with exponential backoff
    until `max_attempts`, then failed; 5xx → failed.
    """
    plan = OutcomePlan(writes=[])
    groups: dict[tuple[str, int | None, str | None, float], list[int]] = {}
    for o in outcomes:
        reply = o.reply[:1000]
        if o.sent:
            plan.sent.append(o.key)
            groups.setdefault(("sent", None, None, 0.0), []).append(o.key)
        elif o.unknown:
            plan.unknown.append(o.key)
            groups.setdefault(("unknown", o.code, reply, 0.0), []).append(o.key)
        elif o.throttled:
            plan.throttled.append(o)
            groups.setdefault(("throttled", None, None, 0.0), []).append(o.key)
        elif o.temporary and attempts.get(o.key, max_attempts) < max_attempts:
            delay = float(min(retry_seconds * 2 ** (attempts[o.key] - 1), 6 * 3600))
            plan.retried.append(o.key)
            groups.setdefault(("retry", o.code, reply, delay), []).append(o.key)
        else:
            plan.failed.append(o)
            groups.setdefault(("failed", o.code, reply, 0.0), []).append(o.key)
    plan.writes.extend(ledger.Write(tuple(ids), kind, code, reply, retry_in)
                       for (kind, code, reply, retry_in), ids in groups.items())
    return plan


# --- the claim a worker holds, and its heartbeat ------------------------------------------------


class _Claim:
    """A claimed batch in hand: its fencing token, its rows, and the worker's own lease clock.

    `expires` is a monotonic time taken *before* each claim or renewal statement was sent, so it
    never falls later than the lease the database wrote; the database's lease stays the one
    that counts (the fence checks it).
    """

    def __init__(self, token: int, rows: list[ledger.ClaimedRow], lease_seconds: float,
                 taken_at: float) -> None:
        self.token = token
        self.rows = rows
        self.lease_seconds = lease_seconds
        self.expires = taken_at + lease_seconds

    def remaining(self) -> float:
        return self.expires - time.monotonic()


class _Heartbeat(threading.Thread):
    """Renews a claim's lease every quarter lease while its batch is in hand (waiting in the
    rate cap, or for a slow SMTP reply). Paused with the process, it lets the lease run out,
    which is what the fence is for."""

    def __init__(self, drainer: Drainer, claim: _Claim) -> None:
        super().__init__(name=f"lease-{drainer.send_id}", daemon=True)
        self.drainer = drainer
        self.claim = claim
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.claim.lease_seconds / 4):
            try:
                self.drainer.renew(self.claim)
            except Exception:
                # The lease may run out now; the fence keeps that safe, and the next beat retries.
                log.exception("send %s: renewing the lease failed", self.drainer.send_id)

    def stop(self) -> None:
        self._done.set()
        self.join()


# --- the drain --------------------------------------------------------------------------------


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
        stop: StopFlag | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.send_id = send_id
        self.sessions = sessions
        self.sender = sender
        self.settings = settings or get_settings()
        self.worker = worker or worker_name()
        self.stop = stop or STOPPING
        self.sleep = sleep or self.stop.wait
        self.stats = DrainStats()
        # The heartbeat and the drain write the same rows: one ledger statement at a time, so
        # they never deadlock each other.
        self._ledger_lock = threading.Lock()
        # Claims walk pending rows upwards from here, so each claim starts where the last one
        # ended instead of stepping over every row already sent (dead index entries until
        # vacuum). Back to 0 for a full pass when nothing is left above it (retries, rows
        # handed back by other workers).
        self._floor = 0

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> DrainStats:
        """Drain until the send is done, stops, or is left to others; log and return counts."""
        global _draining
        began = time.monotonic()
        _draining += 1
        try:
            self._drain()
        finally:
            _draining -= 1
            if _draining == 0 and self.stop is STOPPING:
                STOPPING.clear()
            s = self.stats
            s.seconds = round(time.monotonic() - began, 3)
            log.info("send %s drained: claimed %d, sent %d, failed %d, deferred %d, skipped %d, "
                     "unknown %d, lost %d in %.1fs (%s)", self.send_id, s.claimed, s.sent,
                     s.failed, s.deferred, s.skipped, s.unknown, s.lost, s.seconds,
                     s.stopped_because or "error")
        return self.stats

    def _drain(self) -> None:
        with self.sessions.begin() as session:
            ledger.recover(session, self.send_id)
        while True:
            if self.stop.is_set():
                self.stats.stopped_because = "worker stopping"
                return
            state = self._state()
            if state is None or state.status != "running":
                self.stats.stopped_because = state.status if state else "missing"
                return
            wait = _seconds_until(state.throttle_until)
            if wait > 0:
                self.sleep(min(wait, 5.0))
                continue
            claim = self._claim()
            if claim.rows:
                self._floor = claim.rows[-1].id
                if not self._work(claim):
                    return
                continue
            if self._floor:
                self._floor = 0
                continue
            if not self._finish_or_wait():
                return

    def _state(self) -> Send | None:
        with self.sessions() as session:
            return session.get(Send, self.send_id)

    def _claim(self) -> _Claim:
        s = self.settings
        token = ledger.new_token()
        taken_at = time.monotonic()  # before the statement: our clock never outlives the DB's
        with self.sessions.begin() as session:
            rows = ledger.claim(session, send_id=self.send_id, worker=self.worker, token=token,
                                after_id=self._floor, limit=s.send_batch,
                                lease_seconds=s.send_lease_seconds)
        self.stats.claimed += len(rows)
        return _Claim(token, rows, s.send_lease_seconds, taken_at)

    def _finish_or_wait(self) -> bool:
        """Nothing claimable: finish the send, wait for retries due soon, or leave. True to
        keep draining."""
        with self.sessions.begin() as session:
            if any(ledger.recover(session, self.send_id)):
                return True
            open_rows = ledger.open_counts(session, self.send_id)
            if not open_rows:
                finish(session, self.send_id)
                self.stats.stopped_because = "done"
                return False
            if not open_rows.get("pending"):
                self.stats.stopped_because = "others are finishing it"
                return False
            due_in = ledger.seconds_until_next_due(session, self.send_id)
        self.sleep(min(max(due_in, 0.05), 5.0))
        return True

    # -- one claimed batch -----------------------------------------------------------------

    def renew(self, claim: _Claim) -> int:
        """Extend the lease of what the claim still holds; returns how many rows that is."""
        asked_at = time.monotonic()
        with self._ledger_lock, self.sessions.begin() as session:
            held = ledger.renew(session, send_id=self.send_id, token=claim.token,
                                lease_seconds=claim.lease_seconds)
        if held:
            claim.expires = asked_at + claim.lease_seconds
        return held

    def _work(self, claim: _Claim) -> bool:
        """Mail a claimed batch window by window; whatever is not started at the end goes back.
        False when the drain should stop (the send paused, or the worker is stopping)."""
        heartbeat = _Heartbeat(self, claim)
        heartbeat.start()
        try:
            return self._windows(claim)
        finally:
            heartbeat.stop()
            with self._ledger_lock, self.sessions.begin() as session:
                released = ledger.release(session, send_id=self.send_id, token=claim.token)
            if released:
                log.info("send %s: handed back %d claimed rows not started", self.send_id,
                         released)
            self.stats.deferred += released

    def _windows(self, claim: _Claim) -> bool:
        s = self.settings
        window = throughput.window_size(s.send_window)
        rows = claim.rows
        try:
            prebuilt = messages.prebuilt_for_send(self.sessions, self.send_id)
        except Exception as exc:  # noqa: BLE001  (any: the rows fail with it, the send goes on)
            log.exception("send %s: the issue cannot be built", self.send_id)
            with self._ledger_lock, self.sessions.begin() as session:
                started = ledger.fence(session, send_id=self.send_id, ids=[r.id for r in rows],
                                       token=claim.token)
            self._record([_unbuildable(key, exc) for key in sorted(started)], rows, claim)
            return True
        for start in range(0, len(rows), window):
            if self.stop.is_set():
                self.stats.stopped_because = "worker stopping"
                return False
            state = self._state()
            if state is None or state.status != "running":
                self.stats.stopped_because = state.status if state else "missing"
                return False
            if _seconds_until(state.throttle_until) > 0:
                log.info("send %s: throttled until %s", self.send_id, state.throttle_until)
                return True
            part = rows[start:start + window]
            gone, built, broken = self._build(part, prebuilt)
            # Acquired just before the fence and the send, so the cap holds at the server.
            if not throughput.acquire(len(built), stop=self.stop.is_set):
                self.stats.stopped_because = "worker stopping"
                return False
            # The heartbeat should keep half a lease ahead; if it fell behind, renew now, so no
            # window starts on a lease about to run out.
            if claim.remaining() < claim.lease_seconds / 2 and not self.renew(claim):
                log.warning("send %s: the claim's lease ran out before its window; %d rows "
                            "left to others", self.send_id, len(rows) - start)
                self.stats.lost += len(rows) - start
                return True
            outgoing, broken = self._fence(gone, built, broken, claim)
            if broken:
                self._record(broken, part, claim)
            if not outgoing:
                continue
            outcomes = self.sender.send_many(outgoing)
            self._record(outcomes, part, claim)
            self.stats.windows += 1
        return True

    def _build(self, part: list[ledger.ClaimedRow], prebuilt: messages.Prebuilt
               ) -> tuple[list[int], list[Outgoing], list[Outcome]]:
        """Re-check each reader: (rows whose reader left, the others' copies, and a failed
        outcome with the reason for each copy that cannot be built)."""
        ids = [r.id for r in part]
        with self.sessions() as session:
            readers = ledger.readers(session, ids)
        gone = sorted(set(ids) - {r.delivery_id for r in readers if r.eligible})
        built: list[Outgoing] = []
        broken: list[Outcome] = []
        for r in readers:
            if not r.eligible:
                continue
            try:
                built.append(messages.outgoing(
                    prebuilt, delivery_id=r.delivery_id, email=r.email, name=r.name,
                    email_key=r.email_key, subscription_id=r.subscription_id))
            except Exception as exc:  # noqa: BLE001  (any: this row fails, the rest go on)
                log.warning("delivery %s: the message cannot be built: %s", r.delivery_id, exc)
                broken.append(_unbuildable(r.delivery_id, exc))
        return gone, built, broken

    def _fence(self, gone: list[int], built: list[Outgoing], broken: list[Outcome],
               claim: _Claim) -> tuple[list[Outgoing], list[Outcome]]:
        """Skip the rows whose reader left and fence the others: only the rows the fence
        returns are mailed, or recorded as unbuildable."""
        with self._ledger_lock, self.sessions.begin() as session:
            self.stats.skipped += ledger.skip(session, ids=gone, token=claim.token,
                                              reason=SKIP_REASON)
            started = ledger.fence(session, send_id=self.send_id,
                                   ids=[o.key for o in built] + [o.key for o in broken],
                                   token=claim.token)
        held = len(built) + len(broken)
        if len(started) < held:
            log.warning("send %s: %d of %d rows of a window were no longer held; not mailed",
                        self.send_id, held - len(started), held)
            self.stats.lost += held - len(started)
        return ([o for o in built if o.key in started], [o for o in broken if o.key in started])

    def _record(self, outcomes: list[Outcome], part: list[ledger.ClaimedRow],
                claim: _Claim) -> None:
        s = self.settings
        plan = plan_outcomes(outcomes, {r.id: r.attempts for r in part},
                             max_attempts=s.send_max_attempts,
                             retry_seconds=s.send_retry_seconds)
        with self._ledger_lock, self.sessions.begin() as session:
            written = ledger.write_outcomes(session, token=claim.token, writes=plan.writes)
            failed = set(written.get("failed", ()))
            refusals = [(o.key, o.code, o.reply) for o in plan.failed
                        if o.key in failed and o.code >= 400]
            if refusals:
                # 5xx replies are bounces at our door: the bounce policy decides what follows.
                bounces.record_smtp_failures(session, refusals)
            self._update_send(session, outcomes, plan)
        self.stats.sent += len(written.get("sent", ()))
        self.stats.failed += len(failed)
        self.stats.unknown += len(written.get("unknown", ()))
        self.stats.deferred += len(written.get("retry", ())) + len(written.get("throttled", ()))

    def _update_send(self, session: Session, outcomes: list[Outcome], plan: OutcomePlan) -> None:
        s = self.settings
        now = utcnow()
        send = session.get(Send, self.send_id, with_for_update=True)
        if send is None:
            return
        send.last_activity_at = now
        if plan.throttled:
            send.throttle_level += 1
            pause = min(2 ** send.throttle_level, 30)
            send.throttle_until = now + timedelta(seconds=pause)
            last = plan.throttled[-1]
            log.warning("send %s: SMTP pushed back (%s %s); waiting %ss", self.send_id,
                        last.code, last.reply, pause)
            outage = self._outage_started(send, now)
            if (now - outage).total_seconds() > s.send_max_outage_seconds and send.status == \
                    "running":
                send.pause(f"paused: the SMTP server has refused or been unreachable "
                           f"since {outage:%Y-%m-%d %H:%M:%S} UTC (last reply: "
                           f"{last.code} {last.reply[:200]})")
        elif plan.sent:
            send.throttle_level = 0
            send.throttle_until = None
        if plan.sent:
            send.last_success_at = now
            # Count only the failures after the last success in this window.
            trailing = 0
            for o in reversed(outcomes):
                if o.sent:
                    break
                trailing += 1
            send.consecutive_failures = trailing
        elif plan.failed or plan.retried:
            send.consecutive_failures += len(plan.failed) + len(plan.retried)
        if send.consecutive_failures >= s.send_pause_after_failures and send.status == "running":
            worst = next((o for o in reversed(outcomes) if not o.sent), None)
            send.pause(
                f"paused itself after {send.consecutive_failures} consecutive failed deliveries"
                + (f" (last reply: {worst.code} {worst.reply[:200]})" if worst else "")
            )
            log.error("send %s %s", self.send_id, send.pause_reason)

    def _outage_started(self, send: Send, now: datetime) -> datetime:
        # The last success ends an outage; without one, the send's start does.
        return send.last_success_at or send.started_at or now


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


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _seconds_until(when: datetime | None, now: datetime | None = None) -> float:
    if when is None:
        return 0.0
    return (when - (now or utcnow())).total_seconds()
