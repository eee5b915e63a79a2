"""Bad input at the public sign-up form: a clear 4xx, never a 500, nothing stored lost."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.subscribers.models import ConsentEvent, Subscriber, Subscription

BAD = [
    ({"email": "not-an-address"}, 422, "invalid email"),
    ({"email": ""}, 422, "required"),
    ({"email": "a@b@example.org"}, 422, "invalid email"),
    ({"email": "x@localhost"}, 422, "invalid email"),
    ({"email": "ok@example.org\r\nBcc: victim@example.org"}, 422, "control characters"),
    ({"email": "ok@example.org", "name": "Eve\r\nBcc: victim@example.org"}, 422, "line breaks"),
    ({"email": "ok@example.org", "name": "n" * 201}, 422, "longer than 200"),
    ({"email": "a" * 250 + "@example.org"}, 422, "longer than 254"),
    ({"email": 42}, 422, "must be a string"),
    ({"email": ["x@example.org"]}, 422, "must be a string"),
    ({"email": "ok@example.org", "name": {"first": "x"}}, 422, "must be a string"),
]


def _counts(db):
    db.expire_all()
    # The shared worker may log the confirmation mail of the fixture's sign-up meanwhile:
    # count only the consent a request could have added.
    consent = select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.action.not_like("%-mailed"))
    return (
        db.scalar(select(func.count()).select_from(Subscriber)),
        db.scalar(select(func.count()).select_from(Subscription)),
        db.scalar(consent),
    )


@pytest.fixture
def existing(client, newsletter, db):
    client.post("/subscribe/alliance-digest", json={"email": "kept@example.org", "name": "Kept"})
    return _counts(db)


@pytest.mark.parametrize(("body", "status", "reason"), BAD)
def test_bad_json_sign_up_is_refused_with_a_reason(client, existing, db, body, status, reason):
    r = client.post("/subscribe/alliance-digest", json=body)
    assert r.status_code == status
    assert reason in r.json()["detail"]
    assert _counts(db) == existing
    assert db.scalars(select(Subscriber.name)).all() == ["Kept"]


@pytest.mark.parametrize(("body", "status", "reason"),
                         [b for b in BAD if all(isinstance(v, str) for v in b[0].values())])
def test_bad_form_sign_up_redisplays_the_form(client, existing, db, body, status, reason):
    r = client.post("/subscribe/alliance-digest", data=body)
    assert r.status_code == status
    assert 'role="alert"' in r.text and reason in r.text
    assert "<form" in r.text
    assert _counts(db) == existing


def test_hostile_values_are_escaped_on_the_redisplayed_form(client, newsletter):
    r = client.post("/subscribe/alliance-digest",
                    data={"email": '"><script>alert(1)</script>', "name": "<b>x</b>"})
    assert r.status_code == 422
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;" in r.text or "&#34;&gt;&lt;script" in r.text
    assert "<b>x</b>" not in r.text


def test_malformed_requests(client, newsletter):
    assert client.post("/subscribe/alliance-digest", content=b"{not json",
                       headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/subscribe/alliance-digest", json=["x@example.org"]).status_code == 422
    assert client.post("/subscribe/alliance-digest", content=b"<xml/>",
                       headers={"content-type": "application/xml"}).status_code == 415
    big = client.post("/subscribe/alliance-digest", content=b"email=" + b"a" * 20000,
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413
    multipart = client.post("/subscribe/alliance-digest",
                            files={"email": (None, "multi@example.org")})
    assert multipart.status_code == 200 and "Check your inbox" in multipart.text


def test_unknown_newsletter_is_a_404_page(client, newsletter):
    r = client.get("/subscribe/no-such-list", headers={"accept": "text/html"})
    assert r.status_code == 404 and "<html" in r.text
    r = client.post("/subscribe/no-such-list", json={"email": "x@example.org"})
    assert r.status_code == 404 and r.json()["detail"]


def test_form_page_is_accessible(client, newsletter):
    html = client.get("/subscribe/alliance-digest").text
    assert '<label for="email">' in html and 'id="email"' in html
    assert 'autocomplete="email"' in html
    assert 'tabindex="-1"' in html  # the honeypot is out of the tab order
    assert '<html lang="en">' in html
