"""Admins: users with roles and newsletter scopes, API tokens, newsletter settings."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from tests.newsroom.conftest import BASE, csrf_of


def _shown(page: str) -> str:
    return html.unescape(re.search(r'id="shown-value" type="text" readonly value="([^"]+)"',
                                   page).group(1))


def test_admin_creates_a_limited_user_who_signs_in_with_the_link(signed_in, newsletter,
                                                                  other_newsletter):
    from app.main import create_app

    admin = signed_in("admin")
    page = admin.get("/admin/users")
    token = csrf_of(page.text)
    r = admin.post("/admin/users", data={"csrf_token": token, "email": "limited@example.org",
                                         "role": "editor",
                                         "newsletters": [str(other_newsletter.id)]})
    assert r.status_code == 200
    link = _shown(r.text)
    assert link.startswith(BASE + "/admin/sign-in/")
    with TestClient(create_app(), base_url=BASE) as newcomer:
        path = link.removeprefix(BASE)
        form = newcomer.get(path)
        r = newcomer.post(path, data={"csrf_token": csrf_of(form.text)},
                          headers={"Origin": BASE}, follow_redirects=False)
        assert r.status_code == 303
        dashboard = newcomer.get("/admin")
        assert "River Notes" in dashboard.text and "Alliance Digest" not in dashboard.text
        # Not an admin: the admin pages are refused.
        assert newcomer.get("/admin/users").status_code == 403
    again = admin.post("/admin/users", data={"csrf_token": token, "email": "limited@example.org"})
    assert again.status_code == 409 and "exists already" in again.text


def test_editors_and_viewers_cannot_reach_admin_pages(signed_in, newsletter):
    for role in ("editor", "viewer"):
        client = signed_in(role)
        token = csrf_of(client.get("/admin").text)
        for path in ("/admin/users", "/admin/newsletters", "/admin/newsletters/alliance-digest"):
            assert client.get(path).status_code == 403, (role, path)
        assert client.post("/admin/tokens", data={"csrf_token": token, "name": "x"}
                           ).status_code == 403


def test_tokens_created_shown_once_and_revoked(signed_in, client):
    admin = signed_in("admin")
    token = csrf_of(admin.get("/admin/users").text)
    r = admin.post("/admin/tokens", data={"csrf_token": token, "name": "ci", "role": "viewer"})
    api_token = _shown(r.text)
    assert client.get("/api/v1/newsletters",
                      headers={"Authorization": f"Bearer {api_token}"}).status_code == 200
    listing = admin.get("/admin/users")
    assert api_token not in listing.text and ">ci<" in listing.text
    token_id = re.search(r'/admin/tokens/(\d+)/revoke', listing.text).group(1)
    r = admin.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": token},
                   follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/v1/newsletters",
                      headers={"Authorization": f"Bearer {api_token}"}).status_code == 401


def test_role_change_ends_the_users_sessions(signed_in, make_user, db):
    from app.newsroom import accounts

    editor = signed_in("editor", email="ed@example.org")
    admin = signed_in("admin")
    user = accounts.find_user(db, "ed@example.org")
    token = csrf_of(admin.get("/admin/users").text)
    r = admin.post(f"/admin/users/{user.id}", data={"csrf_token": token, "role": "viewer"},
                   follow_redirects=False)
    assert r.status_code == 303
    assert editor.get("/admin", follow_redirects=False).status_code == 303
    db.expire_all()
    assert accounts.find_user(db, "ed@example.org").role == "viewer"


def test_newsletter_settings(signed_in, newsletter, db):
    from app.newsletters.models import Newsletter

    admin = signed_in("admin")
    page = admin.get("/admin/newsletters/alliance-digest")
    assert page.status_code == 200 and "/subscribe/alliance-digest" in page.text
    assert '&lt;form method="post" action="https://news.example.org/subscribe/' in page.text
    token = csrf_of(page.text)
    r = admin.post("/admin/newsletters/alliance-digest", data={
        "csrf_token": token, "name": "Alliance Digest", "from_name": "The Digest",
        "from_email": "not an address", "cadence": "weekly"})
    assert r.status_code == 422 and "invalid email address" in r.text
    r = admin.post("/admin/newsletters/alliance-digest", data={
        "csrf_token": token, "name": "Alliance Digest", "from_name": "The Digest",
        "from_email": "digest@riverside-water.example.org", "cadence": "weekly",
        "cadence_anchor": "2027-01-07T08:00", "reply_to": ""}, follow_redirects=False)
    assert r.status_code == 303, r.text
    db.expire_all()
    n = db.query(Newsletter).filter_by(slug="alliance-digest").one()
    assert n.from_name == "The Digest" and n.cadence == "weekly"
    assert n.cadence_anchor.isoformat().startswith("2027-01-07T08:00")
    r = admin.post("/admin/newsletters/new", data={
        "csrf_token": token, "slug": "Bad Slug", "name": "X", "from_name": "X",
        "from_email": "x@example.org"})
    assert r.status_code == 422
    r = admin.post("/admin/newsletters/new", data={
        "csrf_token": token, "slug": "field-notes", "name": "Field Notes", "from_name": "FN",
        "from_email": "fn@example.org", "cadence": "none"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/newsletters/field")
