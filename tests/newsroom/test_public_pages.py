"""Reader-facing pages: words for people, and a way on from every page that ends a journey."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from app.subscribers.models import Subscription


def test_a_test_copys_unsubscribe_link_says_it_is_a_test(client):
    for token in ("test-send-sample", "preview-sample"):
        for method in ("GET", "POST"):
            r = client.request(method, f"/u/{token}")
            assert r.status_code == 200, (method, token)
            assert "This is a test copy" in r.text and "Nobody was unsubscribed" in r.text
    assert client.get("/u/not-a-real-token").status_code == 404


def _way_on(page: str) -> dict[str, str]:
    """The links of a page's "where next" list: text -> address."""
    nav = re.search(r'<nav class="way-on" aria-label="Where next">(.*?)</nav>', page, re.S)
    assert nav, page
    return {html.unescape(text): href for href, text in
            re.findall(r'<a href="([^"]+)">([^<]+)</a>', nav.group(1))}


ARCHIVE = "Read past issues of Alliance Digest"


@pytest.fixture
def reader(client, newsletter, db):
    """A pending subscription made through the form, and the newsletter given a feed (so it
    names the publisher's site)."""
    from app.newsletters.models import Newsletter

    db.get(Newsletter, newsletter.id).feed_url = "https://riverside-water.example.org/feed.xml"
    db.commit()
    answer = client.post("/subscribe/alliance-digest", data={"email": "way@example.org"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    links = _way_on(answer.text)
    assert links == {ARCHIVE: "/archive/alliance-digest",
                     "Go to riverside-water.example.org": "https://riverside-water.example.org/"}
    assert client.get(links[ARCHIVE]).status_code == 200
    return db.scalars(select(Subscription)).one()


def test_pages_after_confirm_and_unsubscribe_offer_a_way_on(client, reader, db):
    from app.signup.service import confirm_token, unsubscribe_token

    confirmed = client.post(f"/confirm/{confirm_token(reader)}")
    assert "Subscription confirmed" in confirmed.text and ARCHIVE in _way_on(confirmed.text)
    again = client.post(f"/confirm/{confirm_token(reader)}")
    assert "already subscribed" in again.text and ARCHIVE in _way_on(again.text)

    path = f"/u/{unsubscribe_token(reader)}"
    asking = client.get(path)
    assert 'class="way-on"' not in asking.text  # the question first, nothing to lead away
    for step, heading in ((path, "You are unsubscribed"), (f"{path}/undo", "Welcome back"),
                          (f"{path}/all", "You are unsubscribed")):
        page = client.post(step)
        assert page.status_code == 200 and heading in page.text, step
        assert _way_on(page.text)[ARCHIVE] == "/archive/alliance-digest"
    # An old confirmation link after leaving: sign up again, or read the archive.
    stale = client.post(f"/confirm/{confirm_token(reader)}")
    assert stale.status_code == 409
    assert _way_on(stale.text) == {"Sign up again": "/subscribe/alliance-digest",
                                   ARCHIVE: "/archive/alliance-digest",
                                   "Go to riverside-water.example.org":
                                       "https://riverside-water.example.org/"}


def test_a_test_sends_unsubscribe_link_opens_a_test_page(client, newsletter, db):
    from app.mail import outbound
    from app.subscribers.unsubscribe import test_unsubscribe_token

    row = outbound.record(db, kind="test", email="editor@example.org",
                          email_key="editor@example.org", domain="example.org",
                          newsletter_id=newsletter.id)
    db.commit()
    path = f"/u/{test_unsubscribe_token(row.id)}"
    for method in ("GET", "POST"):
        page = client.request(method, path)
        assert page.status_code == 200
        assert "This is a test copy" in page.text and "nothing was changed" in page.text
        assert _way_on(page.text) == {ARCHIVE: "/archive/alliance-digest"}  # no feed set


def test_refusals_are_said_in_plain_words(client, newsletter):
    missing = client.get("/subscribe/no-such-list", headers={"accept": "text/html"})
    assert missing.status_code == 404
    assert "There is no newsletter at this address" in missing.text
    big = client.post("/subscribe/alliance-digest", content=b"email=" + b"a" * 20000,
                      headers={"content-type": "application/x-www-form-urlencoded",
                               "accept": "text/html"})
    assert big.status_code == 413 and "The form is too large to send" in big.text
    # Past the per-address limit, the form says so above it, in words for a reader.
    for _ in range(5):
        assert client.post("/subscribe/alliance-digest",
                           data={"email": "often@example.org"}).status_code == 200
    limited = client.post("/subscribe/alliance-digest", data={"email": "often@example.org"})
    assert limited.status_code == 429
    alert = re.search(r'<div class="errors" role="alert" id="form-errors">(.*?)</div>',
                      limited.text, re.S)
    assert alert and "signed up too often in the last hour" in alert.group(1)
    assert 'value="often@example.org"' in limited.text
