"""Rows in doubt (`unknown`) are the editor's to resolve: list them, mark them delivered, or
send them again."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import insert, select

from app.sending.models import Delivery, Send
from tests.sending.conftest import add_readers, wait_done


def _send_with(db: Any, issue: int, statuses: list[str], status: str = "done") -> tuple[int,
                                                                                      list[int]]:
    """A send of `issue` whose ledger rows have these statuses; (send id, row ids)."""
    from app.db import utcnow
    from app.subscribers.models import Subscription

    add_readers(len(statuses))
    now = utcnow()
    send = Send(issue_id=issue, status=status, total=len(statuses), started_at=now,
                finished_at=now if status == "done" else None)
    db.add(send)
    db.flush()
    subs = db.execute(select(Subscription.id, Subscription.subscriber_id)
                      .order_by(Subscription.id)).all()
    db.execute(insert(Delivery), [
        {"send_id": send.id, "subscriber_id": sub, "subscription_id": sid, "status": st,
         "attempts": 1, "started_at": now if st == "unknown" else None,
         "smtp_reply": "worker lost its claim" if st == "unknown" else None}
        for (sid, sub), st in zip(subs, statuses, strict=True)])
    db.commit()
    ids = list(db.scalars(select(Delivery.id).where(Delivery.send_id == send.id)
                          .order_by(Delivery.id)))
    return send.id, ids


def test_list_unknown_rows_page_by_page(client, auth, issue, db):
    send_id, ids = _send_with(db, issue, ["sent", "unknown", "unknown", "sent", "unknown",
                                          "unknown", "unknown"])
    seen, cursor, pages = [], 0, 0
    while cursor is not None:
        r = client.get(f"/api/v1/sends/{send_id}/unknown", headers=auth,
                       params={"limit": 2, "cursor": cursor})
        assert r.status_code == 200, r.text
        body = r.json()
        seen += body["items"]
        cursor = body["next_cursor"]
        pages += 1
    assert pages == 3
    assert [i["id"] for i in seen] == [ids[1], ids[2], ids[4], ids[5], ids[6]]
    assert all(i["email"].endswith("@example.org") and i["started_at"] for i in seen)
    assert client.get("/api/v1/sends/999999/unknown", headers=auth).status_code == 404
    assert client.get(f"/api/v1/sends/{send_id}/unknown", headers=auth,
                      params={"limit": 0}).status_code == 422


def test_mark_delivered_and_bad_requests(client, auth, issue, db):
    send_id, ids = _send_with(db, issue, ["sent", "unknown", "unknown", "unknown"])
    url = f"/api/v1/sends/{send_id}/unknown/mark-delivered"
    r = client.post(url, headers=auth, json={"ids": [ids[1], ids[2]]})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == 2
    assert (r.json()["send"]["sent"], r.json()["send"]["unknown"]) == (3, 1)
    # Rows that are not unknown (any more), or not of this send: refused, nothing changed.
    r = client.post(url, headers=auth, json={"ids": [ids[1], ids[3]]})
    assert r.status_code == 409 and r.json()["detail"]["ids"] == [ids[1]]
    for bad in ({}, {"ids": []}, {"ids": [ids[3]], "all": True}, {"all": False},
                {"ids": ["x"]}, {"ids": [0]}, {"everything": True}):
        assert client.post(url, headers=auth, json=bad).status_code == 422, bad
    r = client.post(url, headers={**auth, "Content-Type": "application/json"},
                    content=b"not json")
    assert r.status_code == 422
    r = client.post(url, headers=auth, json={"all": True})
    assert r.status_code == 200 and r.json()["changed"] == 1
    assert r.json()["send"]["unknown"] == 0 and r.json()["send"]["sent"] == 4
    assert client.post("/api/v1/sends/999999/unknown/mark-delivered", headers=auth,
                       json={"all": True}).status_code == 404


def test_viewers_may_list_but_not_resolve(client, issue, db):
    from app.auth import service as auth_service
    from app.db import session_scope

    with session_scope() as session:
        viewer = auth_service.create_token(session, name="viewer", role="viewer")
    headers = {"Authorization": f"Bearer {viewer}"}
    send_id, _ = _send_with(db, issue, ["unknown"])
    assert client.get(f"/api/v1/sends/{send_id}/unknown", headers=headers).status_code == 200
    for action in ("mark-delivered", "resend"):
        r = client.post(f"/api/v1/sends/{send_id}/unknown/{action}", headers=headers,
                        json={"all": True})
        assert r.status_code == 403, r.text
    assert client.get(f"/api/v1/sends/{send_id}/unknown").status_code == 401


def test_a_cancelled_send_refuses_a_resend(client, auth, issue, db):
    send_id, _ = _send_with(db, issue, ["sent", "unknown"], status="cancelled")
    r = client.post(f"/api/v1/sends/{send_id}/unknown/resend", headers=auth, json={"all": True})
    assert r.status_code == 409, r.text
    assert client.get(f"/api/v1/sends/{send_id}", headers=auth).json()["unknown"] == 1


def test_resend_mails_them_again_and_finishes_the_send(client, auth, issue, sink, workers, db):
    send_id, ids = _send_with(db, issue, ["sent", "unknown", "unknown", "sent", "unknown"])
    workers.start(1)
    r = client.post(f"/api/v1/sends/{send_id}/unknown/resend", headers=auth,
                    json={"ids": [ids[1], ids[4]]})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == 2 and r.json()["send"]["status"] == "running"
    report = wait_done(client, auth, send_id, timeout=60, workers=workers)
    assert report["status"] == "done", report
    assert (report["sent"], report["unknown"]) == (4, 1)
    emails = dict(db.execute(select(Delivery.id, Delivery.subscriber_id)).tuples().all())
    from app.subscribers.models import Subscriber

    addresses = dict(db.execute(select(Subscriber.id, Subscriber.email)).tuples().all())
    assert Counter(sink.recipients()) == Counter(
        [addresses[emails[ids[1]]], addresses[emails[ids[4]]]])
