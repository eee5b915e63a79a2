"""Triggering and steering sends through the editor API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.sending.models import Delivery, Send
from tests.conftest import wait_until
from tests.sending.conftest import add_readers, send_report, wait_done


def test_scheduled_send_is_started_by_beat(client, auth, issue, sink, workers, beat):
    addresses = add_readers(10)
    at = datetime.now(UTC) + timedelta(seconds=2)
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={"at": at.isoformat()})
    assert r.status_code == 202 and r.json()["status"] == "scheduled"
    assert client.get(f"/api/v1/issues/{issue}", headers=auth).json()["status"] == "scheduled"
    assert client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={}).status_code == 409
    workers.start(1)
    report = wait_done(client, auth, r.json()["id"], timeout=40, workers=workers)
    assert report["status"] == "done" and report["sent"] == 10
    assert sorted(sink.recipients()) == addresses
    assert client.get(f"/api/v1/issues/{issue}", headers=auth).json()["status"] == "sent"


def test_next_cadence_slot(client, auth, issue, db):
    anchor = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert client.patch("/api/v1/newsletters/alliance-digest", headers=auth, json={
        "cadence": "biweekly", "cadence_anchor": anchor.isoformat()}).status_code == 200
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={"next_slot": True})
    assert r.status_code == 202
    slot = datetime.fromisoformat(r.json()["scheduled_at"])
    assert slot > datetime.now(UTC)
    assert (slot - anchor).total_seconds() % (14 * 86400) == 0
    assert slot - datetime.now(UTC) <= timedelta(days=14)


def test_test_send_goes_only_to_listed_addresses(client, auth, issue, worker, inbox, db):
    add_readers(5)
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth,
                    json={"test_to": ["Editor@Example.org", "second@example.org"]})
    assert r.status_code == 202 and r.json()["status"] == "test"
    messages = inbox.wait_for(2)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == [
        "Editor@example.org", "second@example.org"]
    assert db.scalar(select(func.count()).select_from(Send)) == 0
    assert db.scalar(select(func.count()).select_from(Delivery)) == 0
    # The issue can still be sent for real.
    assert client.get(f"/api/v1/issues/{issue}", headers=auth).json()["status"] == "draft"


def test_bad_send_requests(client, auth, issue):
    url = f"/api/v1/issues/{issue}/send"
    assert client.post(url, headers=auth, json={"at": "tomorrow"}).status_code == 422
    assert client.post(url, headers=auth, json={"at": "2030-01-01T10:00:00"}).status_code == 422
    assert client.post(url, headers=auth, json={"test_to": []}).status_code == 422
    assert client.post(url, headers=auth, json={"test_to": ["nope"]}).status_code == 422
    assert client.post(url, headers=auth, json={"test_to": ["a@example.org"] * 50}
                       ).status_code == 422
    assert client.post(url, headers=auth, json={"bogus": 1}).status_code == 422
    assert client.post("/api/v1/issues/999999/send", headers=auth, json={}).status_code == 404
    assert client.get("/api/v1/sends/999999", headers=auth).status_code == 404
    assert client.get("/api/v1/sends/99999999999999", headers=auth).status_code == 422


def test_pause_resume_cancel(client, auth, issue, sink, workers):
    add_readers(300)
    workers.start(1, MISSIVE_SEND_RATE="50")
    send_id = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={}).json()["id"]
    wait_until(lambda: send_report(client, auth, send_id)["sent"] >= 10, timeout=30,
               what="sending to start")
    paused = client.post(f"/api/v1/sends/{send_id}/pause", headers=auth)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    wait_until(lambda: send_report(client, auth, send_id)["in_flight"] == 0, timeout=20,
               what="in-flight rows to settle")
    frozen = send_report(client, auth, send_id)["sent"]
    import time

    time.sleep(1.5)
    assert send_report(client, auth, send_id)["sent"] == frozen
    assert client.post(f"/api/v1/sends/{send_id}/pause", headers=auth).status_code == 409
    assert client.post(f"/api/v1/sends/{send_id}/resume", headers=auth).status_code == 200
    wait_until(lambda: send_report(client, auth, send_id)["sent"] > frozen, timeout=20,
               what="sending to resume")
    cancelled = client.post(f"/api/v1/sends/{send_id}/cancel", headers=auth).json()
    assert cancelled["status"] == "cancelled"
    final = wait_done(client, auth, send_id)
    assert final["status"] == "cancelled"
    assert final["pending"] == 0 or final["in_flight"] > 0
    assert final["sent"] + final["skipped"] + final["unknown"] + final["in_flight"] == 300
    assert len(sink.recipients()) == len(set(sink.recipients()))
    assert client.post(f"/api/v1/sends/{send_id}/resume", headers=auth).status_code == 409
