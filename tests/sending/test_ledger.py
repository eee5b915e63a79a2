"""The ledger's fencing rules, step by step, on PostgreSQL and on SQLite; the outcome plan."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.mail.pipeline import UNKNOWN_REPLY, Outcome
from app.sending import ledger
from app.sending.engine import plan_outcomes
from app.sending.ledger import Write, db_now
from app.sending.models import Delivery, Send
from tests.sending.conftest import add_readers

LEASE = 30.0


def _ledger_rows(session: Session, count: int) -> int:
    """A running send with `count` pending rows on PostgreSQL (the suite's database)."""
    from app.issues import service as issues
    from app.subscribers.models import Subscription
    from tests.sending.conftest import SAMPLE_ISSUE

    add_readers(count)
    issue = issues.create(session, SAMPLE_ISSUE)
    send = Send(issue=issue, status="running", total=count)
    session.add(send)
    session.flush()
    subs = session.execute(select(Subscription.id, Subscription.subscriber_id)).all()
    session.execute(insert(Delivery), [
        {"send_id": send.id, "subscriber_id": sub, "subscription_id": sid, "status": "pending",
         "attempts": 0} for sid, sub in subs])
    session.commit()
    return send.id


def _expire(session: Session, ids: list[int]) -> None:
    session.execute(update(Delivery).where(Delivery.id.in_(ids))
                    .values(lease_until=db_now(-1)))


def _status(session: Session, ids: list[int]) -> list[str]:
    return list(session.scalars(select(Delivery.status).where(Delivery.id.in_(ids))
                                .order_by(Delivery.id)))


@pytest.fixture
def pg(newsletter: Any) -> Iterator[Session]:
    from app.db import get_sessionmaker

    with get_sessionmaker()() as session:
        yield session


def test_a_lost_claim_cannot_start_or_record_anything(pg: Session) -> None:
    send_id = _ledger_rows(pg, 6)
    mine = ledger.claim(pg, send_id=send_id, worker="a", token=1, after_id=0, limit=6,
                        lease_seconds=LEASE)
    ids = [r.id for r in mine]
    assert len(ids) == 6 and _status(pg, ids) == ["claimed"] * 6
    # Worker a is paused past its lease: its rows go back to others.
    _expire(pg, ids)
    assert ledger.renew(pg, send_id=send_id, token=1, lease_seconds=LEASE) == 0
    assert ledger.fence(pg, send_id=send_id, ids=ids, token=1) == set()
    assert ledger.recover(pg, send_id) == (6, 0)
    theirs = ledger.claim(pg, send_id=send_id, worker="b", token=2, after_id=0, limit=6,
                          lease_seconds=LEASE)
    assert [r.id for r in theirs] == ids
    # a wakes up: its fence and its outcomes touch nothing of b's.
    assert ledger.fence(pg, send_id=send_id, ids=ids, token=1) == set()
    assert ledger.write_outcomes(pg, token=1, writes=[Write(tuple(ids), "sent")]) == {
        "sent": []}
    assert ledger.skip(pg, ids=ids, token=1, reason="x") == 0
    assert ledger.release(pg, send_id=send_id, token=1) == 0
    # b's fence returns every row, and only b's record lands.
    assert ledger.fence(pg, send_id=send_id, ids=ids, token=2) == set(ids)
    assert ledger.fence(pg, send_id=send_id, ids=ids, token=2) == set(), "started only once"
    written = ledger.write_outcomes(pg, token=2, writes=[Write(tuple(ids), "sent")])
    assert sorted(written["sent"]) == ids and _status(pg, ids) == ["sent"] * 6


def test_a_started_row_that_outlives_its_lease_is_unknown_never_pending(pg: Session) -> None:
    send_id = _ledger_rows(pg, 4)
    ids = [r.id for r in ledger.claim(pg, send_id=send_id, worker="a", token=7, after_id=0,
                                      limit=4, lease_seconds=LEASE)]
    assert ledger.fence(pg, send_id=send_id, ids=ids[:2], token=7) == set(ids[:2])
    _expire(pg, ids)
    assert ledger.recover(pg, send_id) == (2, 2)
    assert _status(pg, ids) == ["unknown", "unknown", "pending", "pending"]
    # Nobody can claim the unknown ones; the worker that started them may still say what
    # happened, but a retry or a push-back leaves them to the editor.
    again = ledger.claim(pg, send_id=send_id, worker="b", token=8, after_id=0, limit=4,
                         lease_seconds=LEASE)
    assert [r.id for r in again] == ids[2:]
    written = ledger.write_outcomes(pg, token=7, writes=[
        Write((ids[0],), "sent"), Write((ids[1],), "retry", 451, "try later", 60)])
    assert written == {"sent": [ids[0]], "retry": []}
    assert _status(pg, ids[:2]) == ["sent", "unknown"]


def test_renewal_keeps_a_live_claim_and_release_hands_back_the_unstarted(pg: Session) -> None:
    send_id = _ledger_rows(pg, 5)
    ids = [r.id for r in ledger.claim(pg, send_id=send_id, worker="a", token=3, after_id=0,
                                      limit=5, lease_seconds=1)]
    assert ledger.fence(pg, send_id=send_id, ids=ids[:1], token=3) == {ids[0]}
    assert ledger.renew(pg, send_id=send_id, token=3, lease_seconds=LEASE) == 5
    leases = pg.scalars(select(Delivery.lease_until).where(Delivery.id.in_(ids))).all()
    now = pg.scalar(select(db_now()))
    assert now is not None and all(lease - now > timedelta(seconds=LEASE - 5) for lease in leases)
    assert ledger.recover(pg, send_id) == (0, 0)
    assert ledger.release(pg, send_id=send_id, token=3) == 4
    assert _status(pg, ids) == ["claimed"] + ["pending"] * 4
    attempts = pg.scalars(select(Delivery.attempts).where(Delivery.id.in_(ids[1:]))).all()
    assert set(attempts) == {0}, "a handed-back claim is not an attempt"


def test_the_ledger_on_sqlite(tmp_path: Path) -> None:
    """The embedded default: the same rules with SQLite's clock and no SKIP LOCKED."""
    from app.db import Base
    from app.issues.models import Issue
    from app.newsletters.models import Newsletter
    from app.subscribers.models import Subscriber, Subscription

    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    Base.metadata.create_all(engine)
    sessions = sessionmaker(bind=engine)
    with sessions.begin() as s:
        n = Newsletter(slug="n", name="N", from_name="N", from_email="n@example.org")
        s.add(n)
        s.flush()
        issue = Issue(newsletter_id=n.id, volume=1, number=1, subject="s")
        s.add(issue)
        s.flush()
        send = Send(issue_id=issue.id, status="running")
        s.add(send)
        s.flush()
        for i in range(3):
            sub = Subscriber(email=f"r{i}@example.org", email_key=f"r{i}@example.org",
                             name="", attributes={})
            s.add(sub)
            s.flush()
            subscription = Subscription(subscriber_id=sub.id, newsletter_id=n.id,
                                        status="active", source="test")
            s.add(subscription)
            s.flush()
            s.add(Delivery(send_id=send.id, subscriber_id=sub.id,
                           subscription_id=subscription.id))
        send_id = send.id
    with sessions.begin() as s:
        ids = [r.id for r in ledger.claim(s, send_id=send_id, worker="a", token=11, after_id=0,
                                          limit=3, lease_seconds=0.5)]
        assert len(ids) == 3
        assert ledger.fence(s, send_id=send_id, ids=ids[:1], token=11) == {ids[0]}
    time.sleep(1.2)
    with sessions.begin() as s:
        # Expired by SQLite's clock: no fence, no renewal; recovery sorts the rows.
        assert ledger.fence(s, send_id=send_id, ids=ids[1:], token=11) == set()
        assert ledger.renew(s, send_id=send_id, token=11, lease_seconds=30) == 0
        assert ledger.recover(s, send_id) == (2, 1)
        again = ledger.claim(s, send_id=send_id, worker="b", token=12, after_id=0, limit=3,
                             lease_seconds=30)
        assert [r.id for r in again] == ids[1:]
        assert ledger.renew(s, send_id=send_id, token=12, lease_seconds=30) == 2
        assert ledger.fence(s, send_id=send_id, ids=ids, token=12) == set(ids[1:])
        written = ledger.write_outcomes(s, token=12, writes=[Write(tuple(ids), "sent")])
        assert sorted(written["sent"]) == ids[1:]
        assert _status(s, ids) == ["unknown", "sent", "sent"]
    engine.dispose()


def test_outcomes_are_planned_one_write_per_new_state() -> None:
    outcomes = [
        Outcome(1, 250, "OK"), Outcome(2, 250, "OK"),
        Outcome(3, 550, "5.1.1 no such user"),
        Outcome(4, 451, "4.3.0 try later"),  # first attempt: retried
        Outcome(5, 451, "4.3.0 try later"),  # last attempt: failed
        Outcome(6, 421, "4.7.0 slow down"),
        Outcome(7, 0, UNKNOWN_REPLY),
        Outcome(8, 0, "connection lost: reset"),
    ]
    attempts = {1: 1, 2: 1, 3: 1, 4: 1, 5: 3, 6: 1, 7: 1, 8: 2}
    plan = plan_outcomes(outcomes, attempts, max_attempts=3, retry_seconds=60)
    assert plan.sent == [1, 2]
    assert [o.key for o in plan.failed] == [3, 5]
    assert plan.retried == [4]
    assert plan.unknown == [7]
    assert [o.key for o in plan.throttled] == [6, 8]
    writes = {(w.kind, w.ids) for w in plan.writes}
    assert writes == {("sent", (1, 2)), ("failed", (3,)), ("retry", (4,)), ("failed", (5,)),
                      ("throttled", (6, 8)), ("unknown", (7,))}
    [retry] = [w for w in plan.writes if w.kind == "retry"]
    assert (retry.code, retry.retry_in) == (451, 60)
    later = plan_outcomes([Outcome(4, 451, "x")], {4: 2}, max_attempts=5, retry_seconds=60)
    assert later.writes[0].retry_in == 120, "backoff doubles with each attempt"
