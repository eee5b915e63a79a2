"""The public archive: sent issues only, newest first, their web versions and an Atom feed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

import lxml.html
from issuedata import BASE

ATOM = "{http://www.w3.org/2005/Atom}"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
JAN = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)


def test_unsent_issues_are_not_visible(client, newsletter, make_issue, mark_sent):
    # The sample issue (Vol 2.22) is a draft.
    index = client.get("/archive/alliance-digest")
    assert index.status_code == 200
    assert "No issues have been sent yet" in index.text
    assert client.get("/archive/alliance-digest/2.22").status_code == 404
    feed = ET.fromstring(client.get("/archive/alliance-digest/feed.xml").content)  # noqa: S314
    assert feed.findall(f"{ATOM}entry") == []

    sent = make_issue(volume=2, number=23, subject="The one that went out")
    mark_sent(sent, JAN)
    index = client.get("/archive/alliance-digest")
    assert "The one that went out" in index.text
    assert "Who pays for the last ten metres" not in index.text
    assert client.get("/archive/alliance-digest/2.23").status_code == 200
    assert client.get("/archive/alliance-digest/2.22").status_code == 404


def test_statuses_between_draft_and_sent_stay_hidden(client, newsletter, make_issue, db):
    from app.issues import service

    scheduled = make_issue(volume=4, number=1)
    service.set_status(db, scheduled, "scheduled")
    sending = make_issue(volume=4, number=2)
    service.set_status(db, sending, "sending")
    db.commit()
    assert client.get("/archive/alliance-digest/4.1").status_code == 404
    assert client.get("/archive/alliance-digest/4.2").status_code == 404
    assert "Vol 4." not in client.get("/archive/alliance-digest").text


def test_index_lists_newest_first(client, newsletter, make_issue, mark_sent):
    for number, days in ((1, 0), (3, 28), (2, 14)):
        mark_sent(make_issue(volume=3, number=number, subject=f"Issue three-{number}"),
                  JAN + timedelta(days=days))
    page = client.get("/archive/alliance-digest")
    doc = lxml.html.fromstring(page.text)
    titles = [a.text_content() for a in doc.cssselect(".issues li > a")]
    assert titles == ["Issue three-3", "Issue three-2", "Issue three-1"]
    links = [a.get("href") for a in doc.cssselect(".issues li > a")]
    assert links[0] == f"{BASE}/archive/alliance-digest/3.3"
    assert "29 January 2027" in page.text
    assert doc.xpath('//link[@rel="alternate"][@type="application/atom+xml"]/@href') == [
        f"{BASE}/archive/alliance-digest/feed.xml"]
    assert page.headers["cache-control"].startswith("public")


def test_web_version_is_the_email_without_personal_parts(client, newsletter, make_issue,
                                                        mark_sent):
    issue = make_issue(volume=2, number=30, preheader="Short and sweet", stories=[
        {"headline": "Floodplain maps redrawn", "body": "The new maps add **400** homes.",
         "link": "https://example.org/maps"}])
    mark_sent(issue, JAN)
    page = client.get("/archive/alliance-digest/2.30")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    doc = lxml.html.fromstring(page.text)
    assert doc.findtext(".//title") == "Alliance Digest Vol 2.30"
    assert [h.text_content() for h in doc.cssselect("h2.headline")] == ["Floodplain maps redrawn"]
    assert "Vol 2.30 · 1 January 2027" in doc.text_content()
    texts = {a.text_content().strip(): a.get("href") for a in doc.iter("a")}
    assert texts["Subscribe"] == f"{BASE}/subscribe/alliance-digest"
    assert "Unsubscribe" not in texts
    assert "%%MSV" not in page.text and "Hello" not in doc.text_content()
    assert 'style="' in page.text  # the same inlined HTML as the email


def test_bad_addresses_are_404(client, newsletter):
    assert client.get("/archive/no-such-newsletter").status_code == 404
    assert client.get("/archive/no-such-newsletter/feed.xml").status_code == 404
    for number in ("22", "2.x", "2.22.1", "99999.1", "-1.2", "1.99999999999"):
        assert client.get(f"/archive/alliance-digest/{number}").status_code == 404, number


def test_feed_is_valid_atom(client, newsletter, make_issue, mark_sent):
    evil = 'Pipes & <pumps> "quoted" {{ x }}'
    mark_sent(make_issue(volume=2, number=40, subject=evil, preheader="First <b>one</b>"), JAN)
    mark_sent(make_issue(volume=2, number=41, stories=[
        {"headline": "Second", "body": "With a [link](https://example.org/l)."}]),
        JAN + timedelta(days=14))
    r = client.get("/archive/alliance-digest/feed.xml")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert r.content.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    feed = ET.fromstring(r.content)  # noqa: S314  (our own output)
    assert feed.tag == f"{ATOM}feed"

    def one(parent: ET.Element, tag: str) -> ET.Element:
        found = parent.findall(f"{ATOM}{tag}")
        assert len(found) == 1, f"{tag}: {len(found)}"
        return found[0]

    # RFC 4287 4.1.1: exactly one id, title and updated; an author (here at feed level).
    assert one(feed, "id").text == f"{BASE}/archive/alliance-digest"
    assert one(feed, "title").text == "Alliance Digest"
    assert RFC3339.match(one(feed, "updated").text or "")
    assert one(feed, "updated").text == "2027-01-15T09:00:00Z"
    assert one(one(feed, "author"), "name").text
    rels = {link.get("rel"): link.get("href") for link in feed.findall(f"{ATOM}link")}
    assert rels == {"self": f"{BASE}/archive/alliance-digest/feed.xml",
                    "alternate": f"{BASE}/archive/alliance-digest"}

    entries = feed.findall(f"{ATOM}entry")
    assert [one(e, "id").text for e in entries] == [
        f"{BASE}/archive/alliance-digest/2.41", f"{BASE}/archive/alliance-digest/2.40"]
    for entry in entries:
        assert RFC3339.match(one(entry, "updated").text or "")
        assert one(entry, "title").text
        link = one(entry, "link")
        assert link.get("rel") == "alternate" and link.get("href") == one(entry, "id").text
        content = one(entry, "content")
        assert content.get("type") == "html"
    older = entries[1]
    assert one(older, "title").text == evil  # escaped in the XML, exact once parsed
    assert one(older, "summary").text == "First <b>one</b>"
    assert "<h2>Second</h2>" in (one(entries[0], "content").text or "")
    assert '<a href="https://example.org/l">link</a>' in (one(entries[0], "content").text or "")
