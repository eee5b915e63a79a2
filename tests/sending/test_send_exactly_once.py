"""Every active reader gets the issue exactly once, whatever happens to the workers or queue."""

from __future__ import annotations

from collections import Counter
from email.utils import parseaddr

import redis
from sqlalchemy import select

from app.sending import verp
from app.sending.models import Delivery
from tests.conftest import PREFIX, REDIS_URL, wait_until
from tests.sending.conftest import add_readers, send_report, wait_done


def _start(client, auth, issue) -> int:
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def test_1000_readers_3_workers_each_gets_one(client, auth, issue, sink, workers, db):
    addresses = add_readers(1000)
    add_readers(5, prefix="pending", status="pending")
    add_readers(5, prefix="gone", status="unsubscribed")
    workers.start(3)
    send_id = _start(client, auth, issue)
    report = wait_done(client, auth, send_id, workers=workers)
    assert report["status"] == "done", report
    assert report["total"] == 1000
    assert (report["sent"], report["pending"], report["failed"], report["unknown"]) == (
        1000, 0, 0, 0)
    counts = Counter(sink.recipients())
    assert set(counts) == set(addresses)
    assert max(counts.values()) == 1
    # Each envelope sender names its own delivery, and the HMAC checks out.
    ids = {verp.delivery_id(mail_from) for mail_from, _ in sink.envelopes}
    assert None not in ids and len(ids) == 1000
    rows = dict(db.execute(select(Delivery.id, Delivery.status)).tuples().all())
    assert set(rows) == ids and set(rows.values()) == {"sent"}
    # A second send of the same issue is refused.
    again = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    assert again.status_code == 409


def test_kill_9_every_worker_midway_then_restart(client, auth, issue, sink, workers, beat):
    addresses = add_readers(1000)
    # A rate cap makes the send take a few seconds, so there is a middle to kill it in.
    workers.start(3, MISSIVE_SEND_RATE="250")
    send_id = _start(client, auth, issue)
    wait_until(lambda: send_report(client, auth, send_id)["sent"] >= 300, timeout=30,
               what="the send to get under way")
    workers.kill9()
    midway = send_report(client, auth, send_id)
    assert midway["status"] == "running" and midway["sent"] < 1000
    workers.start(3)
    report = wait_done(client, auth, send_id, timeout=90, workers=workers)
    assert report["status"] == "done", report
    counts = Counter(sink.recipients())
    assert max(counts.values()) == 1, "someone got the issue twice"
    missing = set(addresses) - set(counts)
    # Only rows in flight at the kill may be unknown; they are reported, never resent.
    assert report["unknown"] <= 3 * 16
    assert len(missing) <= report["unknown"]
    assert report["sent"] + report["unknown"] == 1000


def test_duplicate_wake_ups_and_a_flushed_broker(client, auth, issue, sink, workers, beat):
    from app.queue import get_celery

    addresses = add_readers(600)
    workers.start(2, MISSIVE_SEND_RATE="300")
    send_id = _start(client, auth, issue)
    for _ in range(5):
        get_celery().send_task("missive.drain_send", args=[send_id])
    wait_until(lambda: send_report(client, auth, send_id)["sent"] >= 100, timeout=30,
               what="the send to get under way")
    client_redis = redis.Redis.from_url(REDIS_URL)
    for key in client_redis.scan_iter(match=f"{PREFIX}*", count=1000):
        client_redis.delete(key)
    report = wait_done(client, auth, send_id, timeout=90, workers=workers)
    assert report["status"] == "done"
    counts = Counter(sink.recipients())
    assert max(counts.values()) == 1
    assert set(counts) == set(addresses)
    assert report["sent"] == 600


def test_headers_of_every_issue_email(client, auth, issue, sink, workers):
    from app.db import session_scope
    from app.subscribers.models import Subscriber

    [address] = add_readers(1)
    with session_scope() as session:
        session.scalars(select(Subscriber)).one().name = "Zoë O'Brien, \"Ed\""
    workers.start(1)
    send_id = _start(client, auth, issue)
    assert wait_done(client, auth, send_id)["sent"] == 1
    [msg] = sink.inbox.wait_for(1)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["To"].addresses[0].addr_spec == address
    assert msg["To"].addresses[0].display_name == "Zoë O'Brien, \"Ed\""
    assert msg["From"].addresses[0].addr_spec == "digest@riverside-water.example.org"
    assert msg["Subject"] == "Alliance Digest Vol 3.1: test issue"
    assert msg["Date"] and msg["Message-ID"].startswith("<") and "@" in msg["Message-ID"]
    assert "alliance-digest" in msg["List-Id"]
    https, mailto = [part.strip() for part in msg["List-Unsubscribe"].split(",")]
    assert https.startswith("<https://news.example.org/u/") and https.endswith(">")
    assert mailto.startswith("<mailto:bounces@news.example.org")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The unsubscribe URL in the header works, and is the one in the body.
    url = https[1:-1]
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert url in html and url in text
    r = client.post(url[len("https://news.example.org"):],
                    data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert r.status_code == 200
    mail_from, _ = sink.envelopes[0]
    assert parseaddr(mail_from)[1].startswith("bounces+")
    assert verp.delivery_id(mail_from) is not None
    tampered = mail_from.replace("bounces+", "bounces+9")
    assert verp.delivery_id(tampered) is None


def test_message_ids_are_unique(client, auth, issue, sink, workers):
    add_readers(50)
    workers.start(1)
    send_id = _start(client, auth, issue)
    assert wait_done(client, auth, send_id)["sent"] == 50
    ids = [m["Message-ID"] for m in sink.inbox.wait_for(50)]
    assert len(set(ids)) == 50
