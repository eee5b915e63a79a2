"""The bounce policy, applied to events as any way in would produce them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.bounces import service
from app.bounces.events import BounceEvent
from app.db import utcnow
from app.sending import verp
from app.sending.models import Delivery, Send
from app.subscribers.models import Subscriber, Subscription, Suppression
from tests.sending.conftest import add_readers


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
