"""A send never hangs on a message it cannot build: the row fails with the reason, the rest go.

The rules on the way in keep such data out; these rows are put straight into the database, as
data from before a rule (or from another program) would be.
"""

from __future__ import annotations

from sqlalchemy import select, update

from app.issues.models import Issue
from app.sending.models import Delivery
from app.subscribers.models import Subscriber
from tests.sending.conftest import add_readers, wait_done


def _start(client, auth, issue) -> int:
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def test_a_reader_whose_copy_cannot_be_built_fails_and_the_send_finishes(
        client, auth, issue, sink, workers, db):
    addresses = add_readers(20)
    broken = addresses[7]
    db.execute(update(Subscriber).where(Subscriber.email == broken)
               .values(email="no-domain-here"))
    db.commit()
    workers.start(1)
    send_id = _start(client, auth, issue)
    report = wait_done(client, auth, send_id, workers=workers)
    assert report["status"] == "done", report
    assert (report["sent"], report["failed"], report["pending"]) == (19, 1, 0)
    db.expire_all()
    row = db.execute(select(Delivery).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                     .where(Subscriber.email == "no-domain-here")).scalar_one()
    assert row.status == "failed"
    assert "could not be built" in row.smtp_reply and "no domain" in row.smtp_reply
    assert len(sink.recipients()) == 19


def test_an_issue_that_cannot_be_built_fails_its_rows_and_the_send_ends(
        client, auth, issue, sink, workers, db):
    add_readers(5)
    preview = f"/api/v1/issues/{issue}/preview"
    send_id = _start(client, auth, issue)
    # Changed behind the API's back after the send was accepted, before a worker renders it.
    db.execute(update(Issue).where(Issue.id == issue).values(subject="Vol 3.1\x85Bcc: x"))
    db.commit()
    r = client.get(preview, headers=auth)
    assert r.status_code == 422 and "subject" in r.json()["detail"]
    workers.start(1)
    report = wait_done(client, auth, send_id, workers=workers)
    assert report["status"] in ("done", "paused"), report
    assert (report["sent"], report["failed"], report["pending"]) == (0, 5, 0)
    db.expire_all()
    replies = db.scalars(select(Delivery.smtp_reply).where(Delivery.send_id == send_id)).all()
    assert all("cannot be built: subject" in (r or "") for r in replies), replies
    assert sink.recipients() == []
