"""Drafting an issue from the newsletter's feed, over HTTP from a feed the test serves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from feeddata import Item, atom, rss
from sqlalchemy import func, select

from app.editions.models import FeedItemUse
from app.issues.models import Issue
from tests.cli.test_cli_accounts import _one_line_error, missive

NOW = datetime.now(UTC).replace(microsecond=0)
SITE = "https://riverside-water.example.org"
DRAFT = "/api/v1/newsletters/alliance-digest/drafts/from-feed"


def _set_feed(client, auth, url):
    answer = client.patch("/api/v1/newsletters/alliance-digest", json={"feed_url": url},
                          headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["feed_url"] == url


def _counts(db):
    db.expire_all()
    return (db.scalar(select(func.count()).select_from(Issue)),
            db.scalar(select(func.count()).select_from(FeedItemUse)))


RSS_ITEMS = [
    # Feed order is not date order: the draft sorts newest first.
    Item("Floodgate trial on the Weir", f"{SITE}/floodgate", guid="post-1",
         html='<p>The <b>new gate</b> held. <a href="/report">Read the report</a>.</p>'
              "<script>alert('x')</script><p onclick=\"steal()\">Second paragraph.</p>",
         published=NOW - timedelta(days=3)),
    Item("Eastfield & Millbrook <i>share</i> a lab", f"{SITE}/lab", guid="post-2",
         html="<ul><li>one lab</li><li>two cities</li></ul><img src='https://x.example/a.png'>",
         published=NOW - timedelta(days=1), image=f"{SITE}/img/lab.jpg",
         credit="Photo: Ana Ruiz"),
    Item("An item with an odd date", f"{SITE}/odd", guid="post-3",
         html="<p>Dated <em>oddly</em>.</p>",
         published=(NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")),
    Item("An undated item", f"{SITE}/undated", guid="post-4", html="Plain words only."),
]


def test_rss_draft_has_the_right_stories_in_order(client, auth, newsletter, feed_server, db):
    url = feed_server.serve("/feed.rss", rss(RSS_ITEMS), "application/rss+xml")
    _set_feed(client, auth, url)
    answer = client.post(DRAFT, headers=auth)
    assert answer.status_code == 201, answer.text
    issue = answer.json()
    assert issue["status"] == "draft"
    assert issue["label"] == "Vol 2.23"  # after the sample's 2.22
    headlines = [s["headline"] for s in issue["stories"]]
    assert headlines == ["Eastfield & Millbrook share a lab", "An item with an odd date",
                         "Floodgate trial on the Weir", "An undated item"]
    links = [s["link"] for s in issue["stories"]]
    assert links == [f"{SITE}/lab", f"{SITE}/odd", f"{SITE}/floodgate", f"{SITE}/undated"]
    floodgate = issue["stories"][2]["body"]
    assert "**new gate**" in floodgate
    # Made absolute against the feed's own address.
    assert f"[Read the report]({feed_server.base}/report)" in floodgate
    assert "Second paragraph." in floodgate
    assert "alert" not in floodgate and "steal" not in floodgate and "<" not in floodgate
    assert issue["stories"][0]["body"] == "- one lab\n- two cities"
    assert issue["hero_image"] == {"url": f"{SITE}/img/lab.jpg",
                                   "alt": "Eastfield & Millbrook share a lab",
                                   "credit": "Photo: Ana Ruiz", "width": None, "height": None}
    assert "4 new items" in issue["detail"]
    assert _counts(db)[1] >= 4
    # The draft renders as any issue does.
    assert client.get(f"/api/v1/issues/{issue['id']}/preview", headers=auth).status_code == 200


def test_atom_draft(client, auth, newsletter, feed_server):
    items = [
        Item("Atom <b>one</b>", f"{SITE}/a1", html="<p>First &amp; <i>best</i></p>",
             published=NOW - timedelta(hours=5), enclosure=f"{SITE}/img/a1.png"),
        Item("Atom two", f"{SITE}/a2", html="<p>Second</p>", published="2026-11-2 bogus"),
    ]
    _set_feed(client, auth, feed_server.serve("/atom.xml", atom(items), "application/atom+xml"))
    issue = client.post(DRAFT, headers=auth).json()
    assert [s["headline"] for s in issue["stories"]] == ["Atom one", "Atom two"]
    assert issue["stories"][0]["body"] == "First & *best*"
    assert issue["hero_image"]["url"] == f"{SITE}/img/a1.png"
    assert issue["hero_image"]["credit"] == ""


def test_a_second_draft_after_a_send_takes_only_new_items(client, auth, newsletter, feed_server,
                                                          db, mark_sent):
    url = feed_server.serve("/feed.rss", rss(RSS_ITEMS), "application/rss+xml")
    _set_feed(client, auth, url)
    first = client.post(DRAFT, headers=auth).json()
    mark_sent(db.get(Issue, first["id"]))

    later = [
        Item("Fresh news", f"{SITE}/fresh", guid="post-5", html="<p>New.</p>",
             published=datetime.now(UTC) + timedelta(minutes=5)),
        # Re-published with a new date, same guid: used already, never again.
        Item("Floodgate trial on the Weir (updated)", f"{SITE}/floodgate", guid="post-1",
             html="<p>Again.</p>", published=datetime.now(UTC) + timedelta(minutes=6)),
    ]
    feed_server.serve("/feed.rss", rss(later + RSS_ITEMS), "application/rss+xml")
    second = client.post(DRAFT, headers=auth)
    assert second.status_code == 201, second.text
    assert [s["headline"] for s in second.json()["stories"]] == ["Fresh news"]
    assert second.json()["label"] == "Vol 2.24"


def test_nothing_new_creates_nothing(client, auth, newsletter, feed_server, db):
    _set_feed(client, auth, feed_server.serve("/feed.rss", rss(RSS_ITEMS), "application/rss+xml"))
    assert client.post(DRAFT, headers=auth).status_code == 201
    before = _counts(db)
    again = client.post(DRAFT, headers=auth)
    assert again.status_code == 200
    assert again.json()["created"] is None
    assert "nothing new" in again.json()["detail"]
    assert _counts(db) == before
    # Deleting the draft frees its items for the next one.
    issue_id = db.scalars(select(Issue.id).order_by(Issue.id.desc())).first()
    assert client.delete(f"/api/v1/issues/{issue_id}", headers=auth).status_code == 204
    assert client.post(DRAFT, headers=auth).status_code == 201


def _endless_redirect_target(feed_server):
    return f"http://127.0.0.1:{feed_server.port + 1}/feed.rss"


@pytest.mark.parametrize(("setup", "expected"), [
    (lambda s: s.serve("/f", "<rss version='2.0'><channel><item><title>x</titl></item>"),
     "not well-formed XML"),
    (lambda s: s.serve("/f", "<html><body><p>A web page</p></body></html>", "text/html"),
     "not an RSS or Atom feed"),
    (lambda s: None, "answered 404 Not Found"),
    (lambda s: s.serve("/f", b"<rss>" + b" " * (50 * 1024 * 1024) + b"</rss>"),
     "50 MB, more than the 10 MB allowed"),
    (lambda s: s.serve("/f", b"", status=302, Location=_endless_redirect_target(s)),
     "loopback address"),
])
def test_bad_feeds_get_a_clear_error_and_change_nothing(client, auth, newsletter, feed_server,
                                                        db, setup, expected):
    setup(feed_server)
    _set_feed(client, auth, feed_server.url("/f"))
    before = _counts(db)
    answer = client.post(DRAFT, headers=auth)
    assert answer.status_code == 422, answer.text
    assert expected in answer.json()["detail"]
    assert _counts(db) == before


def test_feed_url_is_validated(client, auth, newsletter):
    for bad in ("javascript:alert(1)", "ftp://example.org/feed", "feed", "http://"):
        answer = client.patch("/api/v1/newsletters/alliance-digest", json={"feed_url": bad},
                              headers=auth)
        assert answer.status_code == 422, bad
    no_feed = client.post(DRAFT, headers=auth)
    assert no_feed.status_code == 422
    assert "no feed_url" in no_feed.json()["detail"]
    assert client.post("/api/v1/newsletters/nope/drafts/from-feed",
                       headers=auth).status_code == 404
    assert client.post(DRAFT).status_code == 401


def test_command_line(test_env, client, auth, newsletter, feed_server):
    _set_feed(client, auth, feed_server.serve("/feed.rss", rss(RSS_ITEMS[:2])))
    env = {**test_env, "MISSIVE_FETCH_ALLOW_HOSTS": f"127.0.0.1:{feed_server.port}"}
    made = missive("issue", "draft-from-feed", "alliance-digest", env=env)
    assert made.returncode == 0, made.stderr
    assert "drafted Vol 2.23 from 2 new items" in made.stdout
    assert "preview:" in made.stdout
    again = missive("issue", "draft-from-feed", "alliance-digest", env=env)
    assert again.returncode == 0
    assert "nothing new" in again.stdout
    refused = missive("issue", "draft-from-feed", "alliance-digest",
                      env={**test_env, "MISSIVE_FETCH_ALLOW_HOSTS": ""})
    assert "loopback" in _one_line_error(refused)
