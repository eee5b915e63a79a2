"""Erasing a subscriber: the address is gone from every table, a hash keeps it suppressed, and
the counts of issues already sent stay as they were."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from sqlalchemy import JSON, String, Text, func, select

from tests.newsroom.conftest import csrf_of

ADDRESS = "erin.erase@example.org"


def _places_holding(db, needle: str) -> list[str]:
    """Every `table.column` whose text holds `needle` (any case)."""
    from sqlalchemy import cast

    from app.models import Base

    found = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if not isinstance(column.type, String | Text | JSON):
                continue
            text = func.lower(cast(column, Text()))
            count = db.scalar(select(func.count()).select_from(table)
                              .where(text.contains(needle.lower())))
            if count:
                found.append(f"{table.name}.{column.name}")
    return found


def _reader_with_history(db, newsletter) -> tuple[int, int]:
    """A reader with a sent issue, a bounce, a consent log, a confirmation mail record and a
    suppression, each holding their address; (subscriber id, send id)."""
    from app import demo
    from app.bounces.models import BounceRecord
    from app.db import utcnow
    from app.mail.models import OutboundMessage
    from app.sending.models import Delivery, Send
    from app.subscribers.models import ConsentEvent, Subscriber, Subscription, Suppression

    reader = Subscriber(email="Erin.Erase@example.org", email_key=ADDRESS, name="Erin Erase",
                        attributes={"city": "Bergen", "contact": ADDRESS})
    other = Subscriber(email="stays@example.org", email_key="stays@example.org", name="Stays")
    db.add_all([reader, other])
    db.flush()
    subs = [Subscription(subscriber_id=s.id, newsletter_id=newsletter.id, status="active")
            for s in (reader, other)]
    db.add_all(subs)
    db.flush()
    issue = demo.sample_issue(db, newsletter)
    send = Send(issue_id=issue.id, status="done", total=2, started_at=utcnow(),
                finished_at=utcnow())
    db.add(send)
    db.flush()
    db.add_all([
        Delivery(send_id=send.id, subscriber_id=reader.id, subscription_id=subs[0].id,
                 status="bounced", smtp_code=550,
                 smtp_reply=f"550 5.1.1 <{reader.email}>: no such user"),
        Delivery(send_id=send.id, subscriber_id=other.id, subscription_id=subs[1].id,
                 status="sent", smtp_code=250, smtp_reply="250 ok"),
        ConsentEvent(subscriber_id=reader.id, newsletter_id=newsletter.id, action="signup",
                     source="form:alliance-digest", ip="203.0.113.9", user_agent="Firefox"),
        BounceRecord(send_id=send.id, subscriber_id=reader.id, email_key=ADDRESS, kind="hard",
                     reason="userunknown", source="dsn", action="suppressed",
                     diagnostic=f"smtp; 550 5.1.1 <{ADDRESS.upper()}>: user unknown"),
        OutboundMessage(kind="confirmation", newsletter_id=newsletter.id,
                        subscriber_id=reader.id, email=reader.email, email_key=ADDRESS,
                        message_id="erase-test@missive"),
        Suppression(email_key=ADDRESS, reason="bounced", detail=f"hard bounce of {ADDRESS}"),
    ])
    db.commit()
    return reader.id, send.id


def test_erase_from_the_newsroom_forgets_the_address_and_keeps_it_suppressed(
        signed_in, client, newsletter, db, test_env):
    from app.sending import service as sending
    from app.subscribers import csvio
    from app.subscribers.models import Subscriber

    reader_id, send_id = _reader_with_history(db, newsletter)
    counts_before = sending.report(db, sending.get(db, send_id))
    assert _places_holding(db, ADDRESS)  # the check below can fail

    editor = signed_in("editor")
    page = editor.get(f"/admin/subscribers/{reader_id}")
    assert f'action="/admin/subscribers/{reader_id}/erase"' in page.text
    confirm = editor.get(f"/admin/subscribers/{reader_id}/erase")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.text
    # Without the CSRF token nothing happens.
    assert editor.post(f"/admin/subscribers/{reader_id}/erase").status_code == 403
    r = editor.post(f"/admin/subscribers/{reader_id}/erase",
                    data={"csrf_token": csrf_of(confirm.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert "The subscriber is erased" in editor.get(r.headers["location"]).text

    db.expire_all()
    assert _places_holding(db, ADDRESS) == []
    assert _places_holding(db, "Erin Erase") == [] and _places_holding(db, "Bergen") == []
    assert _places_holding(db, "203.0.113.9") == [] and _places_holding(db, "Firefox") == []
    counts_after = sending.report(db, sending.get(db, send_id))
    assert {k: counts_after[k] for k in ("total", "sent", "bounced", "hard_bounces")} == {
        k: counts_before[k] for k in ("total", "sent", "bounced", "hard_bounces")}
    assert editor.get(f"/admin/subscribers/{reader_id}").status_code == 404
    # The suppression is found by the address, though only its hash is stored.
    found = editor.get("/admin/bounces", params={"email": ADDRESS.upper()})
    assert "erased by web:editor" in found.text and "(erased address)" in found.text
    assert "stays@example.org" in editor.get("/admin/subscribers").text

    # Late reports about the erased reader still count, without storing the address again.
    from app.bounces import service as bounces
    from app.bounces.events import BounceEvent
    from app.sending.models import Delivery

    theirs = db.scalars(select(Delivery).where(Delivery.subscriber_id == reader_id)).one()
    for delivery in (theirs, None):
        bounces.apply(db, BounceEvent(kind="hard", recipient=ADDRESS, status="5.1.1",
                                      diagnostic=f"550 <{ADDRESS}> gone", source="dsn"),
                      delivery)
    db.commit()
    assert _places_holding(db, ADDRESS) == []

    # A later import reports the address as suppressed and stores nothing of it.
    csv_body = f"email,name\n{ADDRESS.upper()},Erin Again\nnew@example.org,New\n".encode()
    report = csvio.import_csv(db, io.BytesIO(csv_body), newsletter=newsletter)
    db.commit()
    assert report.created == 1
    assert report.errors == [{"line": 2, "detail": csvio.ERASED}]
    # The API refuses to add it; a sign-up answers as for any address and stores nothing.
    from app.auth import service as auth_service

    api = {"Authorization": f"Bearer {auth_service.create_token(db, name='t', role='editor')}"}
    db.commit()
    r = client.post("/api/v1/subscribers", headers=api, json={"email": ADDRESS})
    assert r.status_code == 409 and "erased" in r.json()["detail"]
    answers = [client.post("/subscribe/alliance-digest", json={"email": email})
               for email in (ADDRESS, "fresh@example.org")]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    db.expire_all()
    assert _places_holding(db, ADDRESS) == []
    assert db.scalar(select(func.count()).select_from(Subscriber)
                     .where(Subscriber.email_key == "fresh@example.org")) == 1


def test_viewer_and_other_newsletters_editor_cannot_erase(signed_in, newsletter,
                                                          other_newsletter, db):
    from app.subscribers.models import Subscriber, Subscription

    reader = Subscriber(email="keep.me@example.org", email_key="keep.me@example.org")
    db.add(reader)
    db.flush()
    db.add(Subscription(subscriber_id=reader.id, newsletter_id=newsletter.id, status="active"))
    db.commit()
    viewer = signed_in("viewer")
    page = viewer.get(f"/admin/subscribers/{reader.id}")
    assert "Erase this subscriber" not in page.text
    assert viewer.get(f"/admin/subscribers/{reader.id}/erase").status_code == 403
    r = viewer.post(f"/admin/subscribers/{reader.id}/erase",
                    data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 403
    limited = signed_in("editor", newsletters=("river-notes",))
    token = csrf_of(limited.get("/admin").text)
    assert limited.get(f"/admin/subscribers/{reader.id}/erase").status_code == 404
    r = limited.post(f"/admin/subscribers/{reader.id}/erase", data={"csrf_token": token})
    assert r.status_code == 404
    db.expire_all()
    assert db.get(Subscriber, reader.id).email == "keep.me@example.org"


def test_cli_erases_an_address(newsletter, db, test_env):
    from app.subscribers.models import Subscriber, Suppression
    from app.validation import erased_key

    db.add(Subscriber(email="cli.erase@example.org", email_key="cli.erase@example.org"))
    db.commit()
    env = {**os.environ, **test_env}
    done = subprocess.run([sys.executable, "-m", "app.cli", "subscribers", "erase",
                           "CLI.Erase@example.org"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "erased" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "app.cli", "subscribers", "erase", "nope"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    db.expire_all()
    assert db.scalar(select(Subscriber.id).where(
        Subscriber.email_key == "cli.erase@example.org")) is None
    assert db.scalar(select(Suppression.reason).where(
        Suppression.email_key == erased_key("cli.erase@example.org"))) == "erased"
