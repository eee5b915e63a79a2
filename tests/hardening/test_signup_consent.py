"""Consent: the confirmation mail relays nothing the requester wrote, and an old unsubscribe
link cannot re-subscribe anyone."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.subscribers.models import ConsentEvent, Subscription

LURE = "URGENT: your account is locked, log in at https://evil.example/login"


def test_confirmation_mail_carries_no_requester_text(client, newsletter, worker, inbox):
    r = client.post("/subscribe/alliance-digest",
                    json={"email": "victim@example.org", "name": LURE})
    assert r.status_code == 202
    [mail] = inbox.wait_for(1)
    assert str(mail["To"]) == "victim@example.org"
    assert mail["To"].addresses[0].display_name == ""
    raw = mail.as_string()
    for part in ("URGENT", "evil.example", "locked"):
        assert part not in raw
    text = mail.get_body(("plain",)).get_content()
    assert text.startswith("Hello,")
    assert "/confirm/" in text


def _unsubscribed(client, db):
    from app.signup.service import unsubscribe_token

    client.post("/subscribe/alliance-digest", json={"email": "leaver@example.org"})
    sub = db.scalars(select(Subscription)).one()
    sub.status = "active"
    db.commit()
    path = f"/u/{unsubscribe_token(sub)}"
    assert client.post(path).status_code == 200
    return sub, path


def test_undo_within_the_window_resubscribes_and_is_logged(client, newsletter, db):
    sub, path = _unsubscribed(client, db)
    page = client.get(path)
    assert "/undo" in page.text
    r = client.post(f"{path}/undo")
    assert r.status_code == 200 and "Welcome back" in r.text
    db.expire_all()
    assert db.get(Subscription, sub.id).status == "active"
    undo = db.scalars(select(ConsentEvent).where(ConsentEvent.action == "resubscribe")).one()
    assert undo.source == "unsubscribe-undo" and undo.ip == "testclient"


def test_undo_after_the_window_asks_for_a_new_sign_up(client, newsletter, db):
    from app.config import get_settings

    sub, path = _unsubscribed(client, db)
    window = timedelta(hours=get_settings().unsubscribe_undo_hours)
    db.expire_all()
    sub = db.get(Subscription, sub.id)
    sub.unsubscribed_at = sub.unsubscribed_at - window - timedelta(minutes=1)
    db.commit()

    page = client.get(path)
    assert page.status_code == 200
    assert "/undo" not in page.text and "sign up again" in page.text
    r = client.post(f"{path}/undo")
    assert r.status_code == 410
    assert "sign up again" in r.text and 'href="/subscribe/alliance-digest"' in r.text
    db.expire_all()
    assert db.get(Subscription, sub.id).status == "unsubscribed"
    assert db.scalars(select(ConsentEvent).where(
        ConsentEvent.action == "resubscribe")).all() == []
    # Signing up again goes through double opt-in.
    client.post("/subscribe/alliance-digest", json={"email": "leaver@example.org"})
    db.expire_all()
    assert db.get(Subscription, sub.id).status == "pending"
