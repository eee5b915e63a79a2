"""Bad input at the public sign-up form: a clear 4xx, never a 500, nothing stored lost."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from app.subscribers.models import ConsentEvent, Subscriber, Subscription

NOT_AN_ADDRESS = "That doesn't look like an email address \N{EM DASH} please check it."
BAD = [
    ({"email": "not-an-address"}, 422, NOT_AN_ADDRESS),
    ({"email": ""}, 422, "Please enter your email address."),
    ({"email": "   "}, 422, "Please enter your email address."),
    ({"name": "No Address"}, 422, "Please enter your email address."),
    ({"email": "a@b@example.org"}, 422, NOT_AN_ADDRESS),
    ({"email": "x@localhost"}, 422, NOT_AN_ADDRESS),
    ({"email": "ok@example.org\r\nBcc: victim@example.org"}, 422, NOT_AN_ADDRESS),
    ({"email": "ok@example.org", "name": "Eve\r\nBcc: victim@example.org"}, 422,
     "Please write your name on one line"),
    ({"email": "ok@example.org", "name": "n" * 201}, 422,
     "That name is too long \N{EM DASH} please keep it to 200 characters."),
    ({"email": "a" * 250 + "@example.org"}, 422,
     "That email address is too long \N{EM DASH} an address has at most 254 characters."),
    ({"email": 42}, 422, "Please enter your email address as text"),
    ({"email": ["x@example.org"]}, 422, "Please enter your email address as text"),
    ({"email": "ok@example.org", "name": {"first": "x"}}, 422, "Please enter your name as text"),
]
# What a reader must never be shown: a program's words instead of theirs.
MACHINE_WORDS = ("must be a string", "field required", "value_error", "is required",
                 "invalid email", "control characters", "longer than", "@-sign")


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
    assert not any(word in r.json()["detail"] for word in MACHINE_WORDS), r.json()
    field = "name" if "name" in reason else "email"
    assert reason in r.json()["fields"][field]
    assert _counts(db) == existing
    assert db.scalars(select(Subscriber.name)).all() == ["Kept"]


@pytest.mark.parametrize(("body", "status", "reason"),
                         [b for b in BAD if all(isinstance(v, str) for v in b[0].values())])
def test_bad_form_sign_up_redisplays_the_form(client, existing, db, body, status, reason):
    r = client.post("/subscribe/alliance-digest", data=body)
    assert r.status_code == status
    text = html.unescape(r.text)
    assert 'role="alert"' in r.text and reason in text
    assert not any(word in text for word in MACHINE_WORDS)
    # The message sits by its field, which points at it and takes the focus.
    field = "name" if "name" in reason else "email"
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]+)</p>', r.text)
    assert error and reason in html.unescape(error.group(1))
    control = re.search(rf'<input id="{field}"[^>]*>', r.text)
    assert control and f'aria-describedby="{field}-error"' in control.group(0)
    assert 'aria-invalid="true"' in control.group(0) and "autofocus" in control.group(0)
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
