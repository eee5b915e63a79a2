"""The newsroom side of editions: the "Draft from feed" button, the PDF edition preview, the
feed alerts on the dashboard and the feed settings of a newsletter."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.editions.conftest import feed_server  # noqa: F401  (the fixture, used by name)
from tests.editions.feeddata import Item, rss
from tests.newsroom.conftest import csrf_of

NOW = datetime.now(UTC).replace(microsecond=0)
SITE = "https://riverside-water.example.org"
BUTTON = "/admin/newsletters/alliance-digest/draft-from-feed"
ITEMS = [
    Item("Floodgate trial on the Weir", f"{SITE}/floodgate", guid="g-1",
         html="<p>The <b>new gate</b> held.</p>", published=NOW - timedelta(days=2)),
    Item("Eastfield and Millbrook share a lab", f"{SITE}/lab", guid="g-2",
         html="<p>One lab, two cities.</p>", published=NOW - timedelta(days=1)),
]


def _set_feed(db, url: str | None) -> None:
    from app.newsletters import service as newsletters

    newsletters.get_by_slug(db, "alliance-digest").feed_url = url
    db.commit()


def _issue_count(db) -> int:
    from app.issues.models import Issue

    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(Issue)))


def _press(client, slug: str = "alliance-digest"):
    token = csrf_of(client.get("/admin").text)
    return client.post(f"/admin/newsletters/{slug}/draft-from-feed",
                       data={"csrf_token": token}, follow_redirects=False)


@pytest.fixture
def fed(newsletter, feed_server, db):  # noqa: F811  (the imported fixture)
    url = feed_server.serve("/feed.rss", rss(ITEMS), "application/rss+xml")
    _set_feed(db, url)
    return feed_server


def test_the_button_drafts_from_the_feed_and_opens_the_draft(signed_in, fed, db):
    editor = signed_in("editor", newsletters=("alliance-digest",))
    listing = editor.get("/admin/issues")
    assert f'action="{BUTTON}"' in listing.text
    assert "Draft Alliance Digest from feed" in html.unescape(listing.text)
    before = _issue_count(db)

    answer = _press(editor)
    assert answer.status_code == 303, answer.text
    assert "notice=feed" in answer.headers["location"]
    page = editor.get(answer.headers["location"])
    text = html.unescape(page.text)
    assert "Draft made from the feed" in text
    assert "Vol 2.23" in text  # the draft after the sample's 2.22
    assert 'value="Eastfield and Millbrook share a lab"' in text
    assert 'value="Floodgate trial on the Weir"' in text
    assert _issue_count(db) == before + 1
    assert fed.hits == ["/feed.rss"]

    # Pressed again: nothing new, said plainly, and no second draft.
    again = _press(editor)
    assert again.status_code == 200
    assert "nothing new in the feed" in html.unescape(again.text)
    assert 'id="feed-nothing"' in again.text
    assert _issue_count(db) == before + 1


def test_a_feed_that_cannot_be_fetched_gives_the_reason_not_a_500(signed_in, newsletter,
                                                                   feed_server, db):  # noqa: F811
    _set_feed(db, feed_server.url("/gone.rss"))  # the server answers 404 there
    editor = signed_in("editor")
    before = _issue_count(db)
    answer = _press(editor)
    assert answer.status_code == 422
    text = html.unescape(answer.text)
    assert "No draft was made from the feed of Alliance Digest" in text
    assert "404" in text
    assert _issue_count(db) == before


def test_without_a_feed_there_is_no_button_and_posting_says_so(signed_in, newsletter, db):
    editor = signed_in("editor")
    assert "draft-from-feed" not in editor.get("/admin/issues").text
    answer = _press(editor)
    assert answer.status_code == 422
    assert "has no feed_url" in html.unescape(answer.text)


def test_a_viewer_may_not_press_it_and_another_newsletters_editor_finds_nothing(
        signed_in, fed, other_newsletter, db):
    viewer = signed_in("viewer", newsletters=("alliance-digest",))
    assert "draft-from-feed" not in viewer.get("/admin/issues").text
    before = _issue_count(db)
    assert _press(viewer).status_code == 403

    outsider = signed_in("editor", newsletters=("river-notes",))
    assert "draft-from-feed" not in outsider.get("/admin/issues").text
    assert _press(outsider).status_code == 404
    assert _issue_count(db) == before
    assert fed.hits == []  # refused before the feed was fetched


def _sample_id(db) -> int:
    from app import demo
    from app.newsletters import service as newsletters

    sample = demo.sample_issue(db, newsletters.get_by_slug(db, "alliance-digest"))
    assert sample is not None
    return sample.id


def test_the_pdf_edition_preview(signed_in, newsletter, other_newsletter, db):
    issue_id = _sample_id(db)
    viewer = signed_in("viewer", newsletters=("alliance-digest",))
    compose = viewer.get(f"/admin/issues/{issue_id}")
    assert f'href="/admin/issues/{issue_id}/edition.pdf?size=a4"' in compose.text
    assert f'href="/admin/issues/{issue_id}/edition.pdf?size=letter"' in compose.text
    assert "public PDF in the archive" not in compose.text  # a draft is not public

    answer = viewer.get(f"/admin/issues/{issue_id}/edition.pdf?size=letter")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF")
    assert "alliance-digest-2.22.pdf" in answer.headers["content-disposition"]

    assert viewer.get(f"/admin/issues/{issue_id}/edition.pdf?size=legal").status_code == 422
    outsider = signed_in("editor", newsletters=("river-notes",))
    assert outsider.get(f"/admin/issues/{issue_id}/edition.pdf").status_code == 404
    assert outsider.get("/admin/issues/999999/edition.pdf").status_code == 404


def test_a_sent_issue_links_its_public_pdf(signed_in, newsletter, db):
    from app.db import utcnow
    from app.issues.models import Issue

    issue = db.get(Issue, _sample_id(db))
    issue.status, issue.sent_at = "sent", utcnow()
    db.commit()
    editor = signed_in("editor")
    page = editor.get(f"/admin/issues/{issue.id}")
    assert 'href="https://news.example.org/archive/alliance-digest/2.22.pdf"' in page.text


def test_alerts_show_on_the_dashboard_and_dismiss_hides_them(signed_in, newsletter,
                                                             other_newsletter, db):
    from app.editions import service as editions
    from app.editions.models import EditionAlert
    from app.newsletters import service as newsletters

    record = editions.alert(db, newsletters.get_by_slug(db, "alliance-digest"), "feed_failed",
                            "The feed <could not> be read before the slot", mail=False)
    db.commit()
    message = "The feed &lt;could not&gt; be read before the slot"

    viewer = signed_in("viewer", newsletters=("alliance-digest",))
    board = viewer.get("/admin").text
    assert message in board
    assert f'action="/admin/alerts/{record.id}/dismiss"' not in board  # viewers only read
    assert viewer.post(f"/admin/alerts/{record.id}/dismiss",
                       data={"csrf_token": csrf_of(board)}).status_code == 403

    outsider = signed_in("editor", newsletters=("river-notes",))
    board = outsider.get("/admin").text
    assert message not in board
    answer = outsider.post(f"/admin/alerts/{record.id}/dismiss",
                           data={"csrf_token": csrf_of(board)}, follow_redirects=False)
    assert answer.status_code == 404

    editor = signed_in("editor", newsletters=("alliance-digest",))
    board = editor.get("/admin").text
    assert message in board
    answer = editor.post(f"/admin/alerts/{record.id}/dismiss",
                         data={"csrf_token": csrf_of(board)}, follow_redirects=False)
    assert answer.status_code == 303
    after = editor.get(answer.headers["location"]).text
    assert "Alert dismissed." in after
    assert message not in after
    assert message not in viewer.get("/admin").text
    db.expire_all()
    assert db.get(EditionAlert, record.id).dismissed_at is not None


def _settings_form(page: str, **changes: str) -> dict[str, str]:
    import re

    data = {name: html.unescape(value) for name, value in
            re.findall(r'<input id="f-[^"]+" name="([^"]+)" type="[^"]+" value="([^"]*)"', page)}
    for name, value in re.findall(
            r'<textarea id="f-[^"]+" name="([^"]+)"[^>]*>([^<]*)</textarea>', page):
        data[name] = html.unescape(value)
    data["cadence"] = "biweekly"
    data["feed_drafts"] = "off"
    data["csrf_token"] = csrf_of(page)
    data.update(changes)
    return data


def test_feed_settings_are_editable(signed_in, newsletter, db):
    from app.newsletters import service as newsletters

    admin = signed_in("admin")
    page = admin.get("/admin/newsletters/alliance-digest").text
    for field in ("feed_url", "feed_drafts", "feed_draft_hours_before", "editor_emails"):
        assert f'name="{field}"' in page

    bad = admin.post("/admin/newsletters/alliance-digest", data=_settings_form(
        page, feed_url="ftp://riverside-water.example.org/feed"))
    assert bad.status_code == 422
    assert "feed_url must be a full http:// or https:// address" in html.unescape(bad.text)

    answer = admin.post("/admin/newsletters/alliance-digest", data=_settings_form(
        page, feed_url=f"{SITE}/feed.rss", feed_draft_hours_before="24",
        editor_emails="ana@riverside-water.example.org\nBEN@example.org, ana@riverside-water"
                      ".example.org"), follow_redirects=False)
    assert answer.status_code == 303, answer.text
    db.expire_all()
    saved = newsletters.get_by_slug(db, "alliance-digest")
    assert saved.feed_url == f"{SITE}/feed.rss"
    assert saved.feed_draft_hours_before == 24
    assert saved.editor_emails == ["ana@riverside-water.example.org", "BEN@example.org"]
    shown = admin.get("/admin/newsletters/alliance-digest").text
    assert "ana@riverside-water.example.org\nBEN@example.org" in shown

    # notify needs a cadence anchor: the settings say why instead of saving.
    refused = admin.post("/admin/newsletters/alliance-digest", data=_settings_form(
        shown, feed_drafts="notify", cadence="none"))
    assert refused.status_code == 422
    assert "feed_drafts needs" in html.unescape(refused.text)
