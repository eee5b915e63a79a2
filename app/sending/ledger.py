"""The send ledger's SQL: claim, fence, record, renew, release, recover — the rules in one place.

A delivery row moves pending → claimed → sent | failed | skipped (or back to pending for a
retry), and a claimed row whose SMTP exchange may have begun when its worker lost it becomes
`unknown`. The rules that make a reader get an issue at most once:

- Every claim writes a fresh fencing token into its rows and a lease counted by the database's
  clock (never a worker's: a worker may be paused, slow, or have its clock jump).
- A worker mails only the rows that `fence` returned: the one statement that marks a window
  started where the row still carries the worker's token under an unexpired lease.
- A started row is never handed to another worker: when its lease runs out, `recover` makes it
  `unknown`, never `pending`. Only rows that were not started go back to `pending`.
- Outcomes are written only to rows that carry the writer's token and were started by it.
- A lease is renewed only while it has not run out: once expired, a row belongs to `recover`.

Functions take a Session and never commit: the engine commits one short transaction per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from app.leases import db_now as db_now  # the ledger's clock; importers may take it from here
from app.leases import new_token as new_token
from app.sending.models import Delivery, Send
from app.subscribers.models import Subscriber, Subscription, Suppression

UNKNOWN_AFTER_LOSS = "worker lost its claim during the SMTP exchange; outcome unknown"


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    subscriber_id: int
    subscription_id: int
    attempts: int


@dataclass(frozen=True)
class Reader:
    """Who a claimed row is for, as read just before mailing."""

    delivery_id: int
    email: str
    name: str
    email_key: str
    subscription_id: int
    eligible: bool  # subscription still active and the address not suppressed


# --- claim, renew, release, recover -----------------------------------------------------------


def claim(session: Session, *, send_id: int, worker: str, token: int, after_id: int,
          limit: int, lease_seconds: float) -> list[ClaimedRow]:
    """Claim up to `limit` due pending rows of a send above `after_id`, in id order, under
    `token` and a lease of `lease_seconds` from now by the database's clock.

    `FOR UPDATE SKIP LOCKED` lets any number of workers claim side by side on PostgreSQL;
    SQLite has no row locks and ignores it (its one writer at a time serialises claims).
    """
    # A CTE, evaluated once: as `id IN (subquery)` the planner may run the subquery again for
    # each row it updates, and with SKIP LOCKED each run can pick other rows (measured: one
    # claim of LIMIT 64 took 872 rows).
    picked = (
        select(Delivery.id)
        .where(
            Delivery.send_id == send_id,
            Delivery.status == "pending",
            Delivery.id > after_id,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= db_now()),
        )
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == picked.c.id)
        .values(status="claimed", claimed_by=worker, claim_token=token,
                lease_until=db_now(lease_seconds), started_at=None,
                attempts=Delivery.attempts + 1)
        .returning(Delivery.id, Delivery.subscriber_id, Delivery.subscription_id,
                   Delivery.attempts)
        .execution_options(synchronize_session=False)
    )
    return sorted((ClaimedRow(*row) for row in result), key=lambda r: r.id)


def _held(send_id: int, token: int) -> ColumnElement[bool]:
    """Rows of this claim that its lease still covers."""
    return and_(Delivery.send_id == send_id, Delivery.status == "claimed",
                Delivery.claim_token == token, Delivery.lease_until > db_now())


def renew(session: Session, *, send_id: int, token: int, lease_seconds: float) -> int:
    """Extend the lease of every row this claim still holds (started or not) to
    `lease_seconds` from now; an expired lease is not revived. Returns the rows renewed."""
    return _rowcount(session.execute(
        update(Delivery).where(_held(send_id, token))
        .values(lease_until=db_now(lease_seconds))
        .execution_options(synchronize_session=False)
    ))


def _unclaimed() -> dict[str, Any]:
    """What a claimed row that was never started becomes when handed back: pending again, or
    skipped if its send was cancelled meanwhile (a cancel skips only the rows pending then)."""
    cancelled = select(Send.status).where(Send.id == Delivery.send_id).scalar_subquery() \
        == "cancelled"
    return {"status": case((cancelled, "skipped"), else_="pending"),
            "smtp_reply": case((cancelled, "send cancelled"), else_=Delivery.smtp_reply),
            "claimed_by": None, "claim_token": None, "lease_until": None}


def release(session: Session, *, send_id: int, token: int) -> int:
    """Hand back the rows of this claim that were not started (pending again, the attempt not
    counted). Returns how many."""
    return _rowcount(session.execute(
        update(Delivery)
        .where(Delivery.send_id == send_id, Delivery.status == "claimed",
               Delivery.claim_token == token, Delivery.started_at.is_(None))
        .values(**_unclaimed(), attempts=Delivery.attempts - 1)
        .execution_options(synchronize_session=False)
    ))


def recover(session: Session, send_id: int | None = None) -> tuple[int, int]:
    """Release rows whose lease ran out (by the database's clock): never started → pending,
    started → `unknown` (maybe delivered; never resent automatically; the token stays so the
    worker that started it can still record what happened).

    Returns (returned to pending, marked unknown).
    """
    expired = and_(Delivery.status == "claimed", Delivery.lease_until < db_now())
    if send_id is not None:
        expired = and_(expired, Delivery.send_id == send_id)
    unknown = _rowcount(session.execute(
        update(Delivery)
        .where(expired, Delivery.started_at.is_not(None))
        .values(status="unknown", lease_until=None, smtp_reply=UNKNOWN_AFTER_LOSS)
        .execution_options(synchronize_session=False)
    ))
    pending = _rowcount(session.execute(
        update(Delivery)
        .where(expired, Delivery.started_at.is_(None))
        .values(**_unclaimed())
        .execution_options(synchronize_session=False)
    ))
    return pending, unknown


# --- one window: read the readers, skip, fence -------------------------------------------------


def readers(session: Session, ids: Sequence[int]) -> list[Reader]:
    """The readers of these rows, in id order, with whether they may still be mailed."""
    rows = session.execute(
        select(Delivery.id, Subscriber.email, Subscriber.name, Subscriber.email_key,
               Subscription.id, Subscription.status, Suppression.id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .outerjoin(Suppression, Suppression.email_key == Subscriber.email_key)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id)
    ).all()
    return [Reader(r[0], r[1], r[2], r[3], r[4], r[5] == "active" and r[6] is None)
            for r in rows]


def skip(session: Session, *, ids: Sequence[int], token: int, reason: str) -> int:
    """Mark rows of this claim that were not started `skipped` (the reader left meanwhile)."""
    if not ids:
        return 0
    return _rowcount(session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.status == "claimed",
               Delivery.claim_token == token, Delivery.started_at.is_(None))
        .values(status="skipped", claimed_by=None, claim_token=None, lease_until=None,
                smtp_reply=reason)
        .execution_options(synchronize_session=False)
    ))


def fence(session: Session, *, send_id: int, ids: Sequence[int], token: int) -> set[int]:
    """Mark started the rows among `ids` that this claim still holds under an unexpired lease,
    in one statement; returns exactly those, the only ones the caller may mail."""
    if not ids:
        return set()
    result = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), _held(send_id, token), Delivery.started_at.is_(None))
        .values(started_at=db_now())
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars())


# --- outcomes: a plan, then one place that writes it --------------------------------------------


@dataclass(frozen=True)
class Write:
    """One UPDATE of the record step: these rows get this state."""

    ids: tuple[int, ...]
    kind: str  # sent | failed | retry | unknown | throttled
    code: int | None = None
    reply: str | None = None
    retry_in: float = 0  # seconds until a retried row is due again


# Which rows a write may touch besides `claimed` ones: the recovery may have marked a row this
# worker started `unknown` while the worker was paused; a final outcome replaces that guess,
# while a retry or a push-back leaves it to the editor (the send may be finished by then).
_SETTLES_UNKNOWN = {"sent": True, "failed": True, "unknown": False, "retry": False,
                    "throttled": False}


def write_outcomes(session: Session, *, token: int,
                   writes: Sequence[Write]) -> dict[str, list[int]]:
    """Write the planned outcomes to rows this claim started, and only those.

    Returns the ids actually written, by kind (a row lost to `recover` or to an editor is
    left as it is).
    """
    written: dict[str, list[int]] = {}
    for w in writes:
        statuses = ["claimed", "unknown"] if _SETTLES_UNKNOWN[w.kind] else ["claimed"]
        result = session.execute(
            update(Delivery)
            .where(Delivery.id.in_(w.ids), Delivery.claim_token == token,
                   Delivery.started_at.is_not(None), Delivery.status.in_(statuses))
            .values(**_values(w))
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        written.setdefault(w.kind, []).extend(result.scalars())
    return written


def _values(w: Write) -> dict[str, Any]:
    done: dict[str, Any] = {"claimed_by": None, "lease_until": None}
    if w.kind == "sent":
        return {**done, "status": "sent", "sent_at": db_now(), "smtp_code": 250,
                "smtp_reply": None}
    if w.kind in ("failed", "unknown"):
        return {**done, "status": w.kind, "smtp_code": w.code or None, "smtp_reply": w.reply}
    again = {**done, "status": "pending", "claim_token": None, "started_at": None}
    if w.kind == "retry":
        return {**again, "smtp_code": w.code, "smtp_reply": w.reply,
                "next_attempt_at": db_now(w.retry_in)}
    # Throttled: the server pushed back before taking it; the attempt is not counted.
    return {**again, "attempts": Delivery.attempts - 1}


# --- what is left of a send -------------------------------------------------------------------


def open_counts(session: Session, send_id: int) -> dict[str, int]:
    """How many rows of the send are pending and claimed."""
    return {
        status: int(count) for status, count in session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.send_id == send_id, Delivery.status.in_(("pending", "claimed")))
            .group_by(Delivery.status)
        )
    }


def seconds_until_next_due(session: Session, send_id: int) -> float:
    """Seconds (by the database's clock) until the earliest pending row is due; <= 0 if one
    is due now, 0 when there is none."""
    due = session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.send_id == send_id, Delivery.status == "pending")
    )
    if due is None:
        return 0.0
    now = session.scalar(select(db_now()))
    assert now is not None
    return float((due - now).total_seconds())


# --- unknown rows, for the editor to resolve ----------------------------------------------------


@dataclass
class UnknownPage:
    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: int | None = None


def unknown_page(session: Session, send_id: int, *, after_id: int, limit: int) -> UnknownPage:
    """`unknown` rows of a send in id order, after `after_id`, at most `limit`."""
    rows = session.execute(
        select(Delivery.id, Delivery.subscriber_id, Subscriber.email, Subscriber.name,
               Delivery.attempts, Delivery.started_at, Delivery.smtp_reply)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.send_id == send_id, Delivery.status == "unknown",
               Delivery.id > after_id)
        .order_by(Delivery.id)
        .limit(limit + 1)
    ).all()
    page = UnknownPage(items=[
        {"id": r[0], "subscriber_id": r[1], "email": r[2], "name": r[3], "attempts": r[4],
         "started_at": r[5], "smtp_reply": r[6]}
        for r in rows[:limit]
    ])
    if len(rows) > limit:
        page.next_cursor = rows[limit - 1][0]
    return page


def not_unknown(session: Session, send_id: int, ids: Sequence[int]) -> list[int]:
    """Those of `ids` that are not `unknown` rows of this send."""
    found = set(session.scalars(
        select(Delivery.id).where(Delivery.send_id == send_id, Delivery.status == "unknown",
                                  Delivery.id.in_(ids))
    ))
    return sorted(set(ids) - found)


def mark_unknown_delivered(session: Session, send_id: int, ids: Sequence[int] | None,
                           *, note: str) -> int:
    """`unknown` rows (all of the send's, or these) become `sent`. Returns how many."""
    return _rowcount(session.execute(
        update(Delivery).where(_unknown(send_id, ids))
        .values(status="sent", sent_at=db_now(), claimed_by=None, claim_token=None,
                smtp_reply=note)
        .execution_options(synchronize_session=False)
    ))


def resend_unknown(session: Session, send_id: int, ids: Sequence[int] | None,
                   *, note: str) -> int:
    """`unknown` rows (all of the send's, or these) go back to `pending`, due now, their token
    dropped so that no late record from the worker that started them can touch them."""
    return _rowcount(session.execute(
        update(Delivery).where(_unknown(send_id, ids))
        .values(status="pending", claimed_by=None, claim_token=None, lease_until=None,
                started_at=None, next_attempt_at=None, smtp_code=None, smtp_reply=note)
        .execution_options(synchronize_session=False)
    ))


def _unknown(send_id: int, ids: Sequence[int] | None) -> ColumnElement[bool]:
    where = and_(Delivery.send_id == send_id, Delivery.status == "unknown")
    return where if ids is None else and_(where, Delivery.id.in_(ids))


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
