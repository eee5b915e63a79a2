"""Writing, previewing and sending an issue through the newsroom's forms (no JavaScript)."""

from __future__ import annotations

import re

import yaml

from tests.newsroom.conftest import csrf_of


def _form(page_html: str, **fields: str) -> dict[str, str]:
    """The compose form's current fields, with some changed (as a browser would post it)."""
    data: dict[str, str] = {}
    inputs = r'<input id="f-[^"]+" name="([^"]+)" type="[^"]+" value="([^"]*)"'
    for name, value in re.findall(inputs, page_html):
        data[name] = value
    for name, value in re.findall(r'<textarea id="f-[^"]+" name="([^"]+)"[^>]*>([^<]*)</textarea>',
                                  page_html):
        data[name] = value
    for name in ("story_count", "link_count"):
        data[name] = re.search(rf'name="{name}" value="(\d+)"', page_html).group(1)
    selected = re.search(r'<option value="([^"]+)" selected>', page_html)
    if selected:
        data["newsletter"] = selected.group(1)
    data["csrf_token"] = csrf_of(page_html)
    data.update(fields)
    return data


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_compose_fix_a_problem_and_save(signed_in, newsletter, db):
    from sqlalchemy import select

    from app.issues.models import Issue

    client = signed_in("editor")
    page = client.get("/admin/issues/new")
    assert page.status_code == 200
    data = _form(page.text, newsletter="alliance-digest", subject="Floods and pipes",
                 **{"story-0-headline": "", "story-0-body": "Text without a headline.",
                    "story-0-link": "ftp://example.org/x", "action": "save"})
    r = client.post("/admin/issues/new", data=data)
    assert r.status_code == 422
    text = _unescape(r.text)
    assert "a story needs a headline" in text and "is not a full" in text
    # Each problem sits beside its field, which says so to assistive technology.
    assert 'id="f-story-0-headline" name="story-0-headline" type="text" value="" ' \
           'aria-invalid="true" aria-describedby="e-story-0-headline"' in r.text
    assert 'value="Floods and pipes"' in r.text  # what was typed is kept
    mine = select(Issue).where(Issue.subject == "Floods and pipes")
    assert db.scalars(mine).all() == []

    data = _form(r.text, **{"story-0-headline": "The weir holds", "story-0-link": "",
                            "action": "story-add"})
    r = client.post("/admin/issues/new", data=data)
    assert r.status_code == 200 and "Not saved yet" in r.text and "Story 2" in r.text
    data = _form(r.text, **{"story-1-headline": "Second", "story-1-body": "More.",
                            "action": "story-up-1"})
    r = client.post("/admin/issues/new", data=data)
    assert r.text.index('value="Second"') < r.text.index('value="The weir holds"')
    r = client.post("/admin/issues/new", data=_form(r.text, action="save"),
                    follow_redirects=False)
    assert r.status_code == 303
    issue = db.scalars(mine).one()
    assert [s["headline"] for s in issue.stories] == ["Second", "The weir holds"]
    assert issue.subject == "Floods and pipes"
    page = client.get(r.headers["location"])
    assert "Draft created." in page.text and "Pre-send checks" in page.text

    # Remove a story and save on the issue's own page.
    r = client.post(f"/admin/issues/{issue.id}", data=_form(page.text, action="story-remove-0"))
    r = client.post(f"/admin/issues/{issue.id}", data=_form(r.text, action="save"),
                    follow_redirects=False)
    assert r.status_code == 303
    db.refresh(issue)
    assert [s["headline"] for s in issue.stories] == ["The weir holds"]


def test_preview_is_the_api_preview_byte_for_byte(signed_in, newsletter, client, auth, db):
    from app import demo

    issue = demo.sample_issue(db, newsletter)
    editor = signed_in("editor")
    page = editor.get(f"/admin/issues/{issue.id}")
    assert 'title="Preview at phone width"' in page.text
    mine = editor.get(f"/admin/issues/{issue.id}/preview")
    api = client.get(f"/api/v1/issues/{issue.id}/preview", headers=auth)
    assert mine.status_code == 200 and mine.content == api.content
    assert "frame-ancestors 'self'" in mine.headers["content-security-policy"]


def test_download_and_import(signed_in, newsletter, db):
    from app import demo

    issue = demo.sample_issue(db, newsletter)
    editor = signed_in("editor")
    r = editor.get(f"/admin/issues/{issue.id}/download.yaml")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    doc = yaml.safe_load(r.text)
    assert doc["newsletter"] == "alliance-digest" and doc["number"] == issue.number
    token = csrf_of(editor.get("/admin/issues").text)
    # The same number again: refused, and said so.
    r = editor.post("/admin/issues/import", data={"csrf_token": token},
                    files={"file": ("again.yaml", r.content, "application/yaml")})
    assert r.status_code == 422 and "already has" in _unescape(r.text)
    doc.pop("number")
    r = editor.post("/admin/issues/import", data={"csrf_token": token},
                    files={"file": ("next.yaml", yaml.safe_dump(doc), "application/yaml")},
                    follow_redirects=False)
    assert r.status_code == 303
    r = editor.post("/admin/issues/import", data={"csrf_token": token},
                    files={"file": ("bad.json", b"{nope", "application/json")})
    assert r.status_code == 422 and "invalid JSON" in r.text


def test_send_now_after_a_confirmation_stating_the_readers(signed_in, newsletter, db):
    from sqlalchemy import select

    from app import demo
    from app.sending.models import Send
    from app.subscribers.models import Subscriber, Subscription, Suppression

    # Three readers; a suppressed active one and a pending one are not among them.
    for i, status in enumerate(["active", "active", "active", "active", "pending"]):
        s = Subscriber(email=f"r{i}@example.org", email_key=f"r{i}@example.org")
        db.add(s)
        db.flush()
        db.add(Subscription(subscriber_id=s.id, newsletter_id=newsletter.id, status=status))
    db.add(Suppression(email_key="r3@example.org", reason="bounced"))
    db.commit()
    issue = demo.sample_issue(db, newsletter)
    editor = signed_in("editor")
    page = editor.get(f"/admin/issues/{issue.id}/send?mode=now")
    assert page.status_code == 200 and "Send now to 3 readers" in page.text
    assert db.scalars(select(Send)).all() == []
    r = editor.post(f"/admin/issues/{issue.id}/send",
                    data={"csrf_token": csrf_of(page.text), "mode": "now"},
                    follow_redirects=False)
    assert r.status_code == 303
    send = db.scalars(select(Send)).one()
    assert r.headers["location"] == f"/admin/sends/{send.id}"


def test_a_viewer_reads_but_cannot_write_or_send(signed_in, newsletter, db):
    from sqlalchemy import select

    from app import demo
    from app.sending.models import Send

    issue = demo.sample_issue(db, newsletter)
    viewer = signed_in("viewer")
    page = viewer.get(f"/admin/issues/{issue.id}")
    assert page.status_code == 200 and "Save draft" not in page.text
    assert "Review and send" not in page.text
    token = csrf_of(page.text)
    assert viewer.get(f"/admin/issues/{issue.id}/send?mode=now").status_code == 403
    r = viewer.post(f"/admin/issues/{issue.id}/send", data={"csrf_token": token, "mode": "now"})
    assert r.status_code == 403
    assert viewer.post(f"/admin/issues/{issue.id}",
                       data={"csrf_token": token, "subject": "x"}).status_code == 403
    assert viewer.get("/admin/issues/new").status_code == 403
    assert db.scalars(select(Send)).all() == []


def test_an_editor_limited_to_one_newsletter_sees_nothing_of_another(
        signed_in, newsletter, other_newsletter, db):
    from app import demo

    issue = demo.sample_issue(db, newsletter)
    limited = signed_in("editor", newsletters=("river-notes",))
    listing = limited.get("/admin/issues")
    assert listing.status_code == 200 and "Alliance Digest" not in listing.text
    token = csrf_of(listing.text)
    for path in (f"/admin/issues/{issue.id}", f"/admin/issues/{issue.id}/preview",
                 f"/admin/issues/{issue.id}/download.json", f"/admin/issues/{issue.id}/send",
                 "/admin/issues?newsletter=alliance-digest"):
        assert limited.get(path).status_code == 404, path
    for path in (f"/admin/issues/{issue.id}", f"/admin/issues/{issue.id}/send",
                 f"/admin/issues/{issue.id}/test", f"/admin/issues/{issue.id}/delete"):
        assert limited.post(path, data={"csrf_token": token, "to": "a@example.org"}
                            ).status_code == 404, path
    dashboard = limited.get("/admin")
    assert "River Notes" in dashboard.text and "Alliance Digest" not in dashboard.text
