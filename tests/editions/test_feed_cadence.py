"""Beat drafts from the feed before each slot: told to the editors, or scheduled by itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feeddata import Item, rss
from sqlalchemy import func, select

from app.editions.cadence import draft_due
from app.editions.models import EditionAlert
from app.issues.models import Issue
from app.sending.models import Send
from tests.conftest import wait_until

SITE = "https://riverside-water.example.org"
ANCHOR = (datetime.now(UTC) + timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
ITEMS = [Item("Weir news", f"{SITE}/weir", html="<p>The weir is fixed.</p>",
              published=datetime.now(UTC) - timedelta(days=1)),
         Item("Pipe news", f"{SITE}/pipe", html="<p>Pipes are laid.</p>",
              published=datetime.now(UTC) - timedelta(days=2))]


def _configure(client, auth, **fields):
    answer = client.patch("/api/v1/newsletters/alliance-digest", headers=auth, json={
        "cadence": "biweekly", "cadence_anchor": ANCHOR.isoformat(),
        "feed_draft_hours_before": 48, **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _issues(db, status=None):
    db.expire_all()
    query = select(Issue).where(Issue.volume == 2, Issue.number > 22).order_by(Issue.id)
    if status:
        query = query.where(Issue.status == status)
    return db.scalars(query).all()


def test_drafts_once_per_slot_and_tells_the_editors(client, auth, newsletter, feed_server, db,
                                                    worker, inbox):
    url = feed_server.serve("/feed.rss", rss(ITEMS))
    settings = _configure(client, auth, feed_url=url, feed_drafts="notify",
                          editor_emails=["Desk@News.example.org", "chief@news.example.org"])
    assert settings["editor_emails"] == ["Desk@news.example.org", "chief@news.example.org"]

    assert draft_due(ANCHOR - timedelta(hours=49)) == []  # too early
    assert _issues(db) == []
    done = draft_due(ANCHOR - timedelta(hours=47))
    assert done == ["alliance-digest: drafted Vol 2.23 from 2 new items"]
    (issue,) = _issues(db, "draft")
    assert [s["headline"] for s in issue.stories] == ["Weir news", "Pipe news"]
    # The same slot is not drafted twice, however often beat looks.
    assert draft_due(ANCHOR - timedelta(hours=46)) == []
    assert draft_due(ANCHOR - timedelta(minutes=1)) == []
    assert len(_issues(db)) == 1

    alerts = client.get("/api/v1/alerts?newsletter=alliance-digest", headers=auth).json()["items"]
    assert [a["kind"] for a in alerts] == ["feed_draft"]
    assert alerts[0]["issue_id"] == issue.id
    assert "Vol 2.23" in alerts[0]["message"]

    mails = inbox.wait_for(2, timeout=60)
    assert sorted(m["To"] for m in mails) == ["Desk@news.example.org", "chief@news.example.org"]
    assert "drafted from the feed" in mails[0]["Subject"]
    body = mails[0].get_body(("plain",)).get_content()
    assert "Vol 2.23" in body and "/api/v1/issues/" in body
    wait_until(lambda: client.get("/api/v1/alerts", headers=auth).json()["items"][0]["mailed_at"],
               what="the alert marked as mailed")

    dismissed = client.post(f"/api/v1/alerts/{alerts[0]['id']}/dismiss", headers=auth)
    assert dismissed.status_code == 200
    assert client.get("/api/v1/alerts", headers=auth).json()["items"] == []

    # The next slot, two weeks on, is drafted in its own time: nothing new in the feed now.
    assert draft_due(ANCHOR + timedelta(days=14) - timedelta(hours=47)) == [
        "alliance-digest: nothing new in the feed: of its 2 items, none is both new and unused; "
        "no draft made"]
    kinds = [a.kind for a in db.scalars(select(EditionAlert).order_by(EditionAlert.id))]
    assert kinds == ["feed_draft", "feed_nothing_new"]


def test_schedules_the_draft_for_the_slot_when_chosen(client, auth, newsletter, feed_server, db):
    _configure(client, auth, feed_url=feed_server.serve("/feed.rss", rss(ITEMS)),
               feed_drafts="schedule")
    draft_due(ANCHOR - timedelta(hours=3))
    (issue,) = _issues(db)
    assert issue.status == "scheduled"
    send = db.scalars(select(Send).where(Send.issue_id == issue.id)).one()
    assert send.scheduled_at == ANCHOR
    assert send.created_by == "beat"
    (alert,) = db.scalars(select(EditionAlert)).all()
    assert alert.kind == "feed_scheduled"


def test_a_draft_failing_its_checks_is_not_scheduled(client, auth, newsletter, feed_server, db):
    empty = [Item("A headline with no text", f"{SITE}/empty", html="",
                  published=datetime.now(UTC) - timedelta(hours=1))]
    _configure(client, auth, feed_url=feed_server.serve("/feed.rss", rss(empty)),
               feed_drafts="schedule")
    draft_due(ANCHOR - timedelta(hours=3))
    (issue,) = _issues(db)
    assert issue.status == "draft"
    assert db.scalar(select(func.count()).select_from(Send)) == 0
    (alert,) = db.scalars(select(EditionAlert)).all()
    assert alert.kind == "feed_checks_failed"
    assert "story" in alert.message and "pre-send checks" in alert.message


def test_a_broken_feed_is_an_alert_not_a_crash(client, auth, newsletter, feed_server, db):
    _configure(client, auth, feed_url=feed_server.url("/gone.xml"), feed_drafts="notify")
    assert draft_due(ANCHOR - timedelta(hours=3)) == [
        f"alliance-digest: {feed_server.url('/gone.xml')} answered 404 Not Found"]
    (alert,) = db.scalars(select(EditionAlert)).all()
    assert alert.kind == "feed_failed"
    assert "404" in alert.message
    assert _issues(db) == []
    assert draft_due(ANCHOR - timedelta(hours=2)) == []  # told once, not every beat


def test_feed_drafts_need_a_feed_and_a_cadence(client, auth, newsletter):
    answer = client.patch("/api/v1/newsletters/alliance-digest", headers=auth,
                          json={"feed_drafts": "notify"})
    assert answer.status_code == 422
    assert "feed_url" in answer.json()["detail"]
    answer = client.patch("/api/v1/newsletters/alliance-digest", headers=auth,
                          json={"feed_drafts": "sometimes"})
    assert answer.status_code == 422
    answer = client.patch("/api/v1/newsletters/alliance-digest", headers=auth,
                          json={"editor_emails": ["not an address"]})
    assert answer.status_code == 422
