"""How SMTP answers and readers' changes of mind end up in the ledger."""

from __future__ import annotations

import time
from collections import Counter

from sqlalchemy import select

from app.sending.models import Delivery
from app.subscribers.models import Subscriber, Subscription
from tests.conftest import wait_until
from tests.sending.conftest import add_readers, send_report, wait_done


def _start(client, auth, issue) -> int:
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def _row(db, address, *, required=True):
    db.expire_all()
    result = db.execute(
        select(Delivery).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Subscriber.email == address)
    )
    # The ledger is written by a worker once the send starts: it may not be there yet.
    return result.scalar_one() if required else result.scalar_one_or_none()


def test_unsubscribe_and_suppression_during_a_send(client, auth, issue, sink, workers, db):
    from app.signup.service import unsubscribe_token
    from app.subscribers.service import suppress

    addresses = add_readers(400)
    leaver, blocked = addresses[-1], addresses[-2]
    sub = db.scalars(select(Subscription).join(Subscriber).where(
        Subscriber.email == leaver)).one()
    token = unsubscribe_token(sub)
    workers.start(1, MISSIVE_SEND_RATE="100")
    send_id = _start(client, auth, issue)
    wait_until(lambda: send_report(client, auth, send_id)["sent"] >= 20, timeout=30,
               what="the send to start")
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    suppress(db, blocked, "complained")
    db.commit()
    report = wait_done(client, auth, send_id, timeout=60, workers=workers)
    assert report["status"] == "done"
    got = set(sink.recipients())
    assert leaver not in got and blocked not in got
    assert report["skipped"] == 2 and report["sent"] == 398
    assert _row(db, leaver).status == "skipped"


def test_temporary_refusal_is_retried_then_delivered_once(client, auth, issue, sink, workers,
                                                          db):
    addresses = add_readers(20)
    slow = addresses[3]
    sink.inbox.reject[slow] = "451 4.7.1 greylisted, try again later"
    workers.start(1)
    send_id = _start(client, auth, issue)
    def refused_once() -> bool:
        row = _row(db, slow, required=False)
        return row is not None and row.attempts >= 1 and row.status == "pending"

    wait_until(refused_once, timeout=20, what="the first refusal")
    assert "greylisted" in (_row(db, slow).smtp_reply or "")
    del sink.inbox.reject[slow]
    report = wait_done(client, auth, send_id, timeout=60, workers=workers)
    assert report["status"] == "done" and report["sent"] == 20
    assert Counter(sink.recipients())[slow] == 1
    assert _row(db, slow).attempts >= 2


def test_permanent_refusal_is_recorded_with_the_reply(client, auth, issue, sink, workers, db):
    addresses = add_readers(30)
    gone = addresses[10]
    sink.inbox.reject[gone] = f"550 5.1.1 <{gone}>: no such user"
    workers.start(1)
    send_id = _start(client, auth, issue)
    report = wait_done(client, auth, send_id, workers=workers)
    assert report["status"] == "done"
    assert (report["sent"], report["failed"]) == (29, 1)
    row = _row(db, gone)
    assert row.status == "failed" and row.smtp_code == 550
    assert "no such user" in row.smtp_reply
    assert gone not in sink.recipients()


def test_smtp_server_down_for_30_seconds_slows_the_send_down(client, auth, issue, sink,
                                                               workers, beat, db):
    addresses = add_readers(300)
    workers.start(2, MISSIVE_SEND_RATE="60")
    send_id = _start(client, auth, issue)
    wait_until(lambda: send_report(client, auth, send_id)["sent"] >= 30, timeout=30,
               what="the send to start")
    sink.stop()
    down_since = time.monotonic()
    time.sleep(30)
    during = send_report(client, auth, send_id)
    assert during["status"] == "running", during  # slowed down, not failed or paused
    assert during["failed"] == 0
    sink.start()
    report = wait_done(client, auth, send_id, timeout=120, workers=workers)
    assert time.monotonic() - down_since >= 30
    assert report["status"] == "done", report
    counts = Counter(sink.recipients())
    assert max(counts.values()) == 1
    assert report["failed"] == 0
    assert report["sent"] + report["unknown"] == 300
    assert len(set(addresses) - set(counts)) <= report["unknown"]


def test_many_consecutive_failures_pause_the_send(client, auth, issue, sink, workers):
    addresses = add_readers(40)
    for a in addresses:
        sink.inbox.reject[a] = "554 5.7.1 relay access denied"
    workers.start(1, MISSIVE_SEND_PAUSE_AFTER_FAILURES="10")
    send_id = _start(client, auth, issue)
    report = wait_done(client, auth, send_id, timeout=30, workers=workers)
    assert report["status"] == "paused"
    assert "consecutive" in report["pause_reason"] and "relay access denied" in report[
        "pause_reason"]
    assert report["failed"] < 40
    # After the editor fixes the relay, resume delivers the rest.
    sink.inbox.reject.clear()
    resumed = client.post(f"/api/v1/sends/{send_id}/resume", headers=auth)
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    final = wait_done(client, auth, send_id, timeout=30, workers=workers)
    assert final["status"] == "done"
    assert final["sent"] == 40 - report["failed"]


def test_send_rate_caps_all_workers_together(client, auth, issue, sink, workers):
    add_readers(150)
    workers.start(2, MISSIVE_SEND_RATE="50")
    send_id = _start(client, auth, issue)
    assert wait_done(client, auth, send_id, timeout=60, workers=workers)["sent"] == 150
    arrived = sorted(sink.inbox.arrived)
    # Two workers share one budget of 50 a second: 150 messages span about three seconds,
    # and no second of the clock saw more than the cap, give or take the one window of five
    # (a tenth of the rate) that may straddle its edge.
    assert arrived[-1] - arrived[0] >= 2.5
    per_second = Counter(int(t) for t in arrived)
    assert max(per_second.values()) <= 50 + 5
