"""The bounce policy, applied to events as any way in would produce them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.bounces import service
from app.bounces.events import BounceEvent
from app.bounces.models import BounceRecord
from app.bounces.reasons import SENDER_REFUSALS, kind_of
from app.config import get_settings
from app.db import utcnow
from app.sending import verp
from app.sending.models import Delivery, Send
from app.subscribers.models import Subscriber, Subscription, Suppression
from tests.sending.conftest import add_readers

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def sent(issue, db):
    """A finished send of `issue` to 400 readers, every row `sent`."""
    add_readers(400)
    send = Send(issue_id=issue, status="done", started_at=utcnow(), finished_at=utcnow(),
                total=400)
    db.add(send)
    db.flush()
    for sub in db.scalars(select(Subscription)):
        db.add(Delivery(send_id=send.id, subscriber_id=sub.subscriber_id,
                        subscription_id=sub.id, status="sent", sent_at=utcnow()))
    db.commit()
    rows = db.execute(select(Delivery.id, Subscriber.email).join(
        Subscriber, Subscriber.id == Delivery.subscriber_id).order_by(Delivery.id)).all()
    return send.id, rows


def _event(kind, delivery_id, email, status=None, days_ago=0, source="dsn"):
    return BounceEvent(kind=kind, recipient=email, status=status, diagnostic=f"{status} test",
                       source=source, verp_addresses=(verp.envelope_sender(delivery_id),),
                       occurred_at=utcnow() - timedelta(days=days_ago))


def _suppression(db, email):
    db.expire_all()
    return db.scalars(select(Suppression.reason).where(Suppression.email_key == email)).first()


def test_hard_bounce_suppresses_and_marks_the_delivery(sent, db):
    _, rows = sent
    delivery_id, email = rows[0]
    applied = service.ingest(db, [_event("hard", delivery_id, email, "5.1.1")], trusted=False)
    db.commit()
    assert applied.actions == ["suppressed"]
    assert _suppression(db, email) == "bounced"
    assert db.get(Delivery, delivery_id).status == "bounced"
    # The same report again changes nothing more.
    again = service.ingest(db, [_event("hard", delivery_id, email, "5.1.1")], trusted=False)
    assert again.actions == ["duplicate"]


def test_soft_bounces_suppress_after_three_in_thirty_days(sent, db, issue):
    _, rows = sent
    d1, email = rows[0]
    # Earlier soft bounces of the same address, reported by a provider (by address only).
    old = BounceEvent(kind="soft", recipient=email, status="4.2.2", diagnostic="full",
                      source="ses", occurred_at=utcnow() - timedelta(days=40))
    recent = [BounceEvent(kind="soft", recipient=email, status="4.2.2", diagnostic="full",
                          source="ses", occurred_at=utcnow() - timedelta(days=d))
              for d in (10, 2)]
    service.ingest(db, [old, *recent], trusted=True)
    db.commit()
    assert _suppression(db, email) is None  # the 40-day-old one has decayed
    service.ingest(db, [_event("soft", d1, email, "5.2.2")], trusted=False)
    db.commit()
    assert _suppression(db, email) == "bounced"


def test_complaint_unsubscribes_everywhere_and_blocks_the_next_send(sent, db, client, auth,
                                                                    issue):
    send_id, rows = sent
    delivery_id, email = rows[0]
    client.post("/api/v1/newsletters", headers=auth, json={
        "slug": "second", "name": "Second", "from_name": "S", "from_email": "s@example.org"})
    subscriber_id = db.scalar(select(Subscriber.id).where(Subscriber.email == email))
    client.patch(f"/api/v1/subscribers/{subscriber_id}", headers=auth,
                 json={"subscriptions": [{"newsletter": "second", "status": "active"}]})
    service.ingest(db, [_event("complaint", delivery_id, email, source="arf")], trusted=False)
    db.commit()
    db.expire_all()
    assert set(db.scalars(select(Subscription.status).where(
        Subscription.subscriber_id == subscriber_id))) == {"unsubscribed"}
    assert _suppression(db, email) == "complained"
    # One complaint in 400 is 0.25%: under the limit.
    r = client.post("/api/v1/issues", headers=auth, json={
        "newsletter": "alliance-digest", "volume": 3, "number": 2,
        "stories": [{"headline": "Next", "body": "Text."}]})
    next_issue = r.json()["id"]
    report = client.get(f"/api/v1/sends/{send_id}", headers=auth).json()
    assert report["complained"] == 1
    # A second complaint passes 0.3%: the next send is blocked until acknowledged.
    delivery_2, email_2 = rows[1]
    service.ingest(db, [_event("complaint", delivery_2, email_2, source="arf")],
                   trusted=False)
    db.commit()
    blocked = client.post(f"/api/v1/issues/{next_issue}/send", headers=auth, json={})
    assert blocked.status_code == 409 and "complaints" in blocked.json()["detail"]
    ack = client.post(f"/api/v1/sends/{send_id}/acknowledge-complaints", headers=auth)
    assert ack.status_code == 200
    assert client.post(f"/api/v1/issues/{next_issue}/send", headers=auth,
                       json={}).status_code == 202


def test_policy_rejection_punishes_nobody_and_is_shown(sent, db, client, auth):
    send_id, rows = sent
    delivery_id, email = rows[3]
    applied = service.ingest(
        db, [_event("policy", delivery_id, email, "5.7.1")], trusted=False)
    db.commit()
    assert applied.actions == ["alerted"]
    assert _suppression(db, email) is None
    assert db.get(Delivery, delivery_id).status == "sent"
    listed = client.get("/api/v1/bounces", headers=auth, params={"kind": "policy"}).json()
    assert [b["status_code"] for b in listed["items"]] == ["5.7.1"]
    assert client.get(f"/api/v1/sends/{send_id}", headers=auth).json()[
        "policy_rejections"] == 1


def test_delayed_is_not_a_bounce(sent, db):
    _, rows = sent
    delivery_id, email = rows[0]
    applied = service.ingest(db, [_event("delayed", delivery_id, email, "4.4.1")],
                             trusted=False)
    assert (applied.recorded, applied.ignored) == (0, 1)
    assert _suppression(db, email) is None


def test_untrusted_events_must_prove_their_delivery(sent, db):
    _, rows = sent
    _, email = rows[0]
    bare = BounceEvent(kind="hard", recipient=email, status="5.1.1", diagnostic="x",
                       source="dsn", verp_addresses=("bounces+1-0000000000000000@localhost",))
    applied = service.ingest(db, [bare], trusted=False)
    assert applied.unmatched == 1 and applied.recorded == 0
    assert _suppression(db, email) is None


# --- the policy acts on the reason ------------------------------------------------------------


def _because(reason, delivery_id, email, status=None):
    """An event as a parser would give it for `reason` (its kind follows from the reason)."""
    temporary = status is not None and status.startswith("4.")
    return BounceEvent(kind=kind_of(reason, temporary=temporary), recipient=email,
                       status=status, diagnostic=f"{reason} test", source="dsn",
                       verp_addresses=(verp.envelope_sender(delivery_id),), reason=reason)


@pytest.mark.parametrize(("reason", "status", "action", "suppressed", "delivery_status"), [
    ("userunknown", "5.1.1", "suppressed", "bounced", "bounced"),
    ("hostunknown", "5.4.4", "suppressed", "bounced", "bounced"),
    ("hasmoved", "5.1.6", "suppressed", "bounced", "bounced"),
    ("suspend", "5.2.1", "suppressed", "bounced", "bounced"),
    # The same reasons, only temporary: counted, never suppressed on one report.
    ("userunknown", "4.1.1", "counted", None, "bounced"),
    ("mailboxfull", "5.2.2", "counted", None, "bounced"),
    ("expired", "4.4.7", "counted", None, "bounced"),
    ("exceedlimit", "5.2.3", "counted", None, "bounced"),
    ("systemerror", "4.3.0", "counted", None, "bounced"),
    ("networkerror", "4.4.1", "counted", None, "bounced"),
    ("toomanyconn", "4.7.28", "counted", None, "bounced"),
    ("undefined", None, "counted", None, "bounced"),
    # Refusals of the sender: nobody's fault but ours; the reader keeps the delivery as sent.
    *[(reason, "5.7.1", "alerted", None, "sent") for reason in sorted(SENDER_REFUSALS)],
    ("feedback", None, "unsubscribed", "complained", "sent"),
])
def test_each_reason_gets_its_policy(sent, db, reason, status, action, suppressed,
                                     delivery_status):
    _, rows = sent
    delivery_id, email = rows[7]
    applied = service.ingest(db, [_because(reason, delivery_id, email, status)], trusted=False)
    db.commit()
    assert applied.actions == [action]
    assert _suppression(db, email) == suppressed
    assert db.get(Delivery, delivery_id).status == delivery_status
    assert db.scalar(select(BounceRecord.reason).where(
        BounceRecord.delivery_id == delivery_id)) == reason


@pytest.mark.parametrize("reason", ["vacation", "delivered"])
def test_auto_replies_and_deliveries_are_ignored(sent, db, reason):
    _, rows = sent
    delivery_id, email = rows[8]
    applied = service.ingest(db, [_because(reason, delivery_id, email)], trusted=False)
    assert (applied.recorded, applied.ignored) == (0, 1)
    assert db.scalar(select(func.count()).select_from(BounceRecord)) == 0


def test_a_burst_of_refusals_pauses_the_running_send(sent, db, monkeypatch):
    send_id, rows = sent
    monkeypatch.setattr(get_settings(), "bounce_refusal_burst", 3)
    send = db.get(Send, send_id)
    send.status = "running"
    db.commit()
    first = service.ingest(db, [_because("blocked", d, e, "5.7.1") for d, e in rows[:2]],
                           trusted=False)
    db.commit()
    assert first.actions == ["alerted", "alerted"]
    assert db.get(Send, send_id).status == "running"
    third = service.ingest(db, [_because("spamdetected", *rows[2], "5.7.1")], trusted=False)
    db.commit()
    db.expire_all()
    assert third.actions == ["alerted, send paused"]
    paused = db.get(Send, send_id)
    assert paused.status == "paused"
    assert "2 blocked" in paused.pause_reason and "1 spamdetected" in paused.pause_reason
    # Nobody was suppressed for it.
    assert db.scalar(select(func.count()).select_from(Suppression)) == 0


def test_refusals_of_a_finished_send_pause_nothing(sent, db, monkeypatch):
    send_id, rows = sent
    monkeypatch.setattr(get_settings(), "bounce_refusal_burst", 1)
    applied = service.ingest(db, [_because("blocked", *rows[0], "5.7.1")], trusted=False)
    db.commit()
    assert applied.actions == ["alerted"]
    assert db.get(Send, send_id).status == "done"


def test_reasons_are_shown_to_editors(sent, db, client, auth):
    send_id, rows = sent
    service.ingest(db, [
        _because("userunknown", *rows[0], "5.1.1"),
        _because("userunknown", *rows[1], "5.1.1"),
        _because("mailboxfull", *rows[2], "5.2.2"),
        _because("blocked", *rows[3], "5.7.1"),
    ], trusted=False)
    db.commit()
    report = client.get(f"/api/v1/sends/{send_id}", headers=auth).json()
    assert report["bounce_reasons"] == {"blocked": 1, "mailboxfull": 1, "userunknown": 2}
    listed = client.get("/api/v1/bounces", headers=auth, params={"send_id": send_id}).json()
    assert [(b["email"], b["reason"], b["diagnostic"]) for b in listed["items"]] == [
        (rows[3][1], "blocked", "blocked test"), (rows[2][1], "mailboxfull", "mailboxfull test"),
        (rows[1][1], "userunknown", "userunknown test"),
        (rows[0][1], "userunknown", "userunknown test")]
    only = client.get("/api/v1/bounces", headers=auth, params={"reason": "mailboxfull"}).json()
    assert [b["email"] for b in only["items"]] == [rows[2][1]]
    bad = client.get("/api/v1/bounces", headers=auth, params={"reason": "nonsense"})
    assert bad.status_code == 422


def test_a_raw_report_of_sender_refusals_suppresses_nobody(sent, db, client, auth):
    # The hand-written fixture, re-addressed to a real delivery's VERP address.
    _, rows = sent
    delivery_id, _ = rows[4]
    raw = (FIXTURES / "sender_refusals.eml").read_bytes().replace(
        b"bounces+5119-9203142536475869@news.example.org",
        verp.envelope_sender(delivery_id).encode())
    r = client.post("/api/v1/bounces", headers={**auth, "content-type": "message/rfc822"},
                    content=raw)
    assert r.status_code == 200, r.text
    # A report covers one delivery: the first refusal is recorded, the rest are its duplicates.
    assert r.json()["actions"][0] == "alerted"
    assert db.scalar(select(func.count()).select_from(Suppression)) == 0
    listed = client.get("/api/v1/bounces", headers=auth).json()["items"]
    assert {b["reason"] for b in listed} == {"rejected"}
    assert {b["kind"] for b in listed} == {"policy"}


def test_an_smtp_refusal_during_the_send_gets_a_reason(sent, db):
    _, rows = sent
    service.record_smtp_failures(db, [
        (rows[0][0], 550, "5.7.1 Service unavailable; client host blocked using zen.example"),
        (rows[1][0], 550, "5.1.1 <x@example.com>: Recipient address rejected: User unknown"),
        (rows[2][0], 552, "5.2.2 Mailbox full"),
    ])
    db.commit()
    got = db.execute(select(BounceRecord.delivery_id, BounceRecord.reason, BounceRecord.kind)
                     .order_by(BounceRecord.delivery_id)).all()
    assert [(r.reason, r.kind) for r in got] == [
        ("blocked", "policy"), ("userunknown", "hard"), ("mailboxfull", "soft")]
    assert _suppression(db, rows[0][1]) is None
    assert _suppression(db, rows[1][1]) == "bounced"
