"""A preview link shows the sample reader only, for one issue, until it expires or is revoked."""

from __future__ import annotations

import time

BASE = "https://news.example.org"


def _issue(client, auth) -> dict:
    r = client.post("/api/v1/issues", headers=auth, json={
        "newsletter": "alliance-digest",
        "stories": [{"headline": "Rates go up", "body": "Council voted yes."}]})
    assert r.status_code == 201, r.text
    return r.json()


def _reader(client, auth) -> int:
    r = client.post("/api/v1/subscribers", headers=auth, json={
        "email": "reader18@example.org", "name": "Private Reader",
        "subscriptions": [{"newsletter": "alliance-digest", "status": "active"}]})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_preview_link_does_not_open_a_readers_copy(client, newsletter, auth):
    issue = _issue(client, auth)
    reader = _reader(client, auth)
    path = issue["preview_url"].removeprefix(BASE)
    sample = client.get(path.replace("/preview?", "/preview.eml?"))
    assert sample.status_code == 200
    assert b"reader18@example.org" not in sample.content
    for suffix in ("", ".txt", ".eml"):
        url = path.replace("/preview?", f"/preview{suffix}?") + f"&subscriber={reader}"
        r = client.get(url)
        assert r.status_code == 401, (suffix, r.status_code)
        assert "Private Reader" not in r.text and "reader18" not in r.text
        assert "editor token" in r.json()["detail"]


def test_a_readers_copy_needs_an_editor_token(client, newsletter, auth, viewer_token):
    issue = _issue(client, auth)
    reader = _reader(client, auth)
    url = f"/api/v1/issues/{issue['id']}/preview.eml?subscriber={reader}"
    assert client.get(url).status_code == 401
    viewer = client.get(url, headers={"Authorization": f"Bearer {viewer_token}"})
    assert viewer.status_code == 403
    r = client.get(url, headers=auth)
    assert r.status_code == 200 and b"reader18@example.org" in r.content


def test_preview_links_can_be_revoked(client, newsletter, auth):
    issue = _issue(client, auth)
    old = issue["preview_url"].removeprefix(BASE)
    assert client.get(old).status_code == 200
    r = client.post(f"/api/v1/issues/{issue['id']}/preview/revoke", headers=auth)
    assert r.status_code == 200
    new = r.json()["preview_url"].removeprefix(BASE)
    assert new != old
    assert client.get(old).status_code == 401
    assert client.get(new).status_code == 200


def _link_from_days_ago(client, auth, issue_id: int, days: int, monkeypatch) -> str:
    """The issue's preview link as it was given out `days` ago."""
    import itsdangerous

    now = int(time.time())
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp",
                        lambda self: now - days * 86400)
    link = client.get(f"/api/v1/issues/{issue_id}", headers=auth).json()["preview_url"]
    monkeypatch.undo()
    return str(link).removeprefix(BASE)


def test_preview_links_expire(client, newsletter, auth, monkeypatch):
    old = _link_from_days_ago(client, auth, _issue(client, auth)["id"], 8, monkeypatch)
    r = client.get(old)
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]


def test_preview_link_lifetime_is_a_setting(client, newsletter, auth, monkeypatch):
    from app.config import get_settings

    old = _link_from_days_ago(client, auth, _issue(client, auth)["id"], 8, monkeypatch)
    # An eight-day-old link: dead under the default week, alive when the operator allows 30.
    monkeypatch.setenv("MISSIVE_PREVIEW_LINK_DAYS", "30")
    get_settings.cache_clear()
    try:
        assert client.get(old).status_code == 200
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
