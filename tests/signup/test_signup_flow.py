"""The double opt-in flow over HTTP, with a real worker delivering through a real SMTP server."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.subscribers.models import ConsentEvent, Subscriber, Subscription

LINK = re.compile(r"https://news\.example\.org(/(?:confirm|u)/[A-Za-z0-9_.\-]+)")


def _link(message, kind: str) -> str:
    text = message.get_body(("plain",)).get_content()
    paths = [p for p in LINK.findall(text) if p.startswith(f"/{kind}/")]
    assert paths, text
    return paths[0]


def test_sign_up_confirm_and_welcome(client, newsletter, worker, inbox, db):
    r = client.post("/subscribe/alliance-digest", json={"email": "Reader@Example.ORG",
                                                        "name": "Ada Reader"},
                    headers={"user-agent": "pytest-browser"})
    assert r.status_code == 202

    [confirmation] = inbox.wait_for(1)
    assert confirmation["To"].addresses[0].addr_spec == "Reader@example.org"
    assert confirmation["Subject"] == "Confirm your subscription to Alliance Digest"
    assert confirmation.get_body(("html",)) is not None
    path = _link(confirmation, "confirm")

    # A link scanner's GET shows a button and changes nothing.
    page = client.get(path)
    assert page.status_code == 200
    assert f'action="{path}"' in page.text and "<button" in page.text
    assert db.scalars(select(Subscription.status)).one() == "pending"

    done = client.post(path, headers={"user-agent": "pytest-browser"})
    assert done.status_code == 200
    assert "Subscription confirmed" in done.text
    db.expire_all()
    sub = db.scalars(select(Subscription)).one()
    assert sub.status == "active" and sub.confirmed_at is not None

    consent = db.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
    actions = [(c.action, c.ip, c.user_agent) for c in consent]
    assert ("signup", "testclient", "pytest-browser") in actions
    assert ("confirm", "testclient", "pytest-browser") in actions
    assert next(c for c in consent if c.action == "signup").source == "form:alliance-digest"

    messages = inbox.wait_for(2)
    welcome = messages[1]
    assert welcome["Subject"] == "Welcome to Alliance Digest"
    assert "/u/" in welcome["List-Unsubscribe"]

    # Confirming twice is harmless: no second welcome.
    again = client.post(path)
    assert again.status_code == 200 and "already subscribed" in again.text
    assert db.scalars(select(Subscriber.email)).all() == ["Reader@example.org"]

    # The editor API shows the subscriber.
    from app.auth import service as auth

    token = auth.create_token(db, name="check")
    db.commit()
    listed = client.get("/api/v1/subscribers", headers={"Authorization": f"Bearer {token}"})
    [item] = listed.json()["items"]
    assert item["email"] == "Reader@example.org"
    assert item["subscriptions"][0]["status"] == "active"


def test_rolled_back_sign_up_sends_nothing(newsletter, worker, inbox):
    from app.db import session_scope
    from app.signup import service
    from app.subscribers.service import Actor

    class Boom(Exception):
        pass

    try:
        with session_scope() as session:
            service.sign_up(session, slug="alliance-digest", email="ghost@example.org",
                            name=None, actor=Actor(source="test"))
            raise Boom
    except Boom:
        pass
    # A committed sign-up after it goes through, so the worker is known to be draining.
    with session_scope() as session:
        service.sign_up(session, slug="alliance-digest", email="real@example.org", name=None,
                        actor=Actor(source="test"))
    inbox.wait_for(1)
    import time

    time.sleep(1.0)
    recipients = [m["To"].addresses[0].addr_spec for m in inbox.wait_for(1)]
    assert recipients == ["real@example.org"]


def test_same_answer_for_new_and_known_addresses(client, newsletter, db):
    first = client.post("/subscribe/alliance-digest", json={"email": "known@example.org"})
    db.execute(Subscription.__table__.update().values(status="active"))
    db.commit()
    known = client.post("/subscribe/alliance-digest", json={"email": "known@example.org"})
    new = client.post("/subscribe/alliance-digest", json={"email": "new@example.org"})
    assert first.status_code == known.status_code == new.status_code == 202
    assert first.json() == known.json() == new.json()

    page_known = client.post("/subscribe/alliance-digest", data={"email": "known@example.org"})
    page_new = client.post("/subscribe/alliance-digest", data={"email": "other@example.org"})
    assert page_known.status_code == page_new.status_code == 200
    assert page_known.text == page_new.text


def test_burst_of_sign_ups_gives_one_mail_then_429(client, newsletter, worker, inbox):
    codes = [
        client.post("/subscribe/alliance-digest", json={"email": "burst@example.org"}).status_code
        for _ in range(50)
    ]
    assert codes[0] == 202
    assert 429 in codes
    assert set(codes) <= {202, 429}
    assert codes.index(429) < 10 and all(c == 429 for c in codes[codes.index(429):])
    inbox.wait_for(1)
    import time

    time.sleep(1.5)
    assert len(inbox.to("burst@example.org")) == 1


def test_honeypot_answers_the_same_and_stores_nothing(client, newsletter, db):
    r = client.post("/subscribe/alliance-digest",
                    data={"email": "bot@example.org", "website": "http://spam.example"})
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert db.scalars(select(Subscriber)).all() == []


def test_expired_and_forged_tokens_get_clear_pages(client, newsletter, db, monkeypatch):
    from app.signup.service import confirm_token

    client.post("/subscribe/alliance-digest", json={"email": "late@example.org"})
    sub = db.scalars(select(Subscription)).one()
    token = confirm_token(sub)

    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for path in (f"/confirm/{forged}", "/confirm/not-a-token", f"/confirm/{'x' * 5000}"):
        for method in ("get", "post"):
            r = getattr(client, method)(path)
            assert r.status_code == 404, (path, method)
            assert "not valid" in r.text
    db.expire_all()
    assert db.scalars(select(Subscription.status)).one() == "pending"

    import itsdangerous

    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp",
                        lambda self: 1_000_000_000)
    old = confirm_token(sub)
    monkeypatch.undo()
    r = client.post(f"/confirm/{old}")
    assert r.status_code == 410 and "expired" in r.text
    # The page leads straight to signing up again.
    assert '<a href="/subscribe/alliance-digest">Sign up again</a>' in r.text
    assert client.get(f"/confirm/{old}").status_code == 410
    db.expire_all()
    assert db.scalars(select(Subscription.status)).one() == "pending"


def test_unsubscribe_link_get_changes_nothing_post_unsubscribes(client, newsletter, db):
    from app.signup.service import unsubscribe_token

    client.post("/subscribe/alliance-digest", json={"email": "leaver@example.org"})
    sub = db.scalars(select(Subscription)).one()
    sub.status = "active"
    db.commit()
    path = f"/u/{unsubscribe_token(sub)}"
    assert client.get(path).status_code == 200
    assert client.head(path).status_code == 200
    db.expire_all()
    assert db.scalars(select(Subscription.status)).one() == "active"

    r = client.post(path, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert r.status_code == 200
    db.expire_all()
    assert db.scalars(select(Subscription.status)).one() == "unsubscribed"
    # An old confirmation link cannot bring the reader back.
    from app.signup.service import confirm_token

    stale = client.post(f"/confirm/{confirm_token(sub)}")
    db.expire_all()
    assert db.scalars(select(Subscription.status)).one() == "unsubscribed"
    assert stale.status_code in (200, 409)
