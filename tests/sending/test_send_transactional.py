"""Mail a reader waits for goes on its own queue: never behind a send, never behind a refusal."""

from __future__ import annotations

import time
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app.bounces.models import BounceRecord
from app.subscribers.models import Suppression
from tests.conftest import wait_until
from tests.sending.conftest import add_readers, send_report, wait_done


def _start(client, auth, issue) -> int:
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def test_confirmation_arrives_within_seconds_during_a_long_send(client, auth, issue, sink,
                                                                 workers):
    add_readers(3000)
    # One worker, slowed to 150 messages/s: the send lasts about 20 s and holds the bulk
    # worker's only slot the whole time.
    workers.start(1, MISSIVE_SEND_RATE="150")
    send_id = _start(client, auth, issue)
    wait_until(lambda: send_report(client, auth, send_id)["sent"] >= 300, timeout=40,
               what="the send to get under way")
    signed_up = time.time()
    r = client.post("/subscribe/alliance-digest", json={"email": "newcomer@example.org"})
    assert r.status_code == 202, r.text
    wait_until(lambda: sink.inbox.to("newcomer@example.org"), timeout=30,
               what="the confirmation mail")
    with sink.inbox.lock:
        arrived = next(t for (_, rcpts, _), t in zip(sink.inbox.messages, sink.inbox.arrived,
                                                      strict=True)
                       if "newcomer@example.org" in rcpts)
    during = send_report(client, auth, send_id)
    assert during["status"] == "running" and during["sent"] < 3000, during
    assert arrived - signed_up < 5, f"the confirmation took {arrived - signed_up:.1f}s"
    message = sink.inbox.to("newcomer@example.org")[0]
    assert message["Subject"].startswith("Confirm your subscription")
    r = client.post(f"/api/v1/sends/{send_id}/cancel", headers=auth)
    assert r.status_code == 200, r.text


def test_a_refused_address_does_not_hold_up_the_rest_of_the_batch(client, auth, newsletter,
                                                                   sink, workers, db):
    addresses = [f"import{i}@example.org" for i in range(6)]
    refused = addresses[2]
    sink.inbox.reject[refused] = "550 5.1.1 <import2@example.org>: no such user"
    workers.start(1)
    body = "email,name\n" + "".join(f"{a},Reader {i}\n" for i, a in enumerate(addresses))
    r = client.post("/api/v1/subscribers/import",
                    params={"newsletter": "alliance-digest", "status": "pending"},
                    content=body, headers={**auth, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    wait_until(lambda: len(sink.inbox.messages) >= 5, timeout=30,
               what="the confirmations of the other addresses")
    wait_until(lambda: db.scalar(select(Suppression.reason).where(
        Suppression.email_key == refused)), timeout=15, what="the refused address suppressed")
    time.sleep(3)  # a retry of the refused address would come within this (10 s backoff: no)
    counts = Counter(sink.recipients())
    assert counts == {a: 1 for a in addresses if a != refused}
    db.expire_all()
    records = db.scalars(select(BounceRecord).where(BounceRecord.email_key == refused)).all()
    assert [(r.kind, r.source, r.action) for r in records] == [("hard", "smtp", "suppressed")]
    assert "5.1.1" in records[0].diagnostic


def _metrics(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_a_send_and_its_bounce(client, auth, issue, sink, workers):
    addresses = add_readers(40)
    sink.inbox.reject[addresses[7]] = "550 5.1.1 no such user"
    before = _metrics(client)
    workers.start(1)
    send_id = _start(client, auth, issue)
    report = wait_done(client, auth, send_id, workers=workers)
    assert (report["sent"], report["failed"]) == (39, 1), report
    after = _metrics(client)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("missive_deliveries_total", outcome="sent") == 39
    assert grew("missive_deliveries_total", outcome="refused") == 1
    assert grew("missive_smtp_reply_seconds_count") == 39
    assert grew("missive_smtp_reply_seconds_bucket", le="+Inf") == 39
    assert grew("missive_bounce_events_total", kind="hard") == 1
    assert after[("missive_sends", (("status", "done"),))] >= 1
    assert after[("missive_sends_running", ())] == 0
    assert ("missive_queue_length", (("queue", "transactional"),)) in after
