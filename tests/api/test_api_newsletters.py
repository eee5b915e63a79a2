"""The newsletters part of the editor API: create, read, change; bad input is a 4xx."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.newsletters.models import Newsletter

BODY = {
    "slug": "field-notes",
    "name": "Field Notes",
    "from_name": "Field Notes team",
    "from_email": "notes@Riverside-Water.example.org",
    "reply_to": "editors@riverside-water.example.org",
    "footer": "You signed up at riverside-water.example.org.",
    "cadence": "monthly",
}


def stored(db) -> list[tuple]:
    db.expire_all()
    return [(n.slug, n.name, n.from_name, n.from_email, n.reply_to, n.footer, n.cadence)
            for n in db.scalars(select(Newsletter).order_by(Newsletter.slug))]


def test_create_then_read_and_list(client, auth, newsletter):
    r = client.post("/api/v1/newsletters", json=BODY, headers=auth)
    assert r.status_code == 201, r.text
    made = r.json()
    assert {k: made[k] for k in BODY} == {**BODY, "from_email": "notes@riverside-water.example.org"}

    got = client.get("/api/v1/newsletters/field-notes", headers=auth)
    assert got.status_code == 200
    assert got.json() == made

    listed = client.get("/api/v1/newsletters", headers=auth).json()["items"]
    assert [n["slug"] for n in listed] == ["alliance-digest", "field-notes"]


def test_duplicate_slug_is_409_and_keeps_the_first(client, auth, newsletter, db):
    before = stored(db)
    r = client.post("/api/v1/newsletters", json={**BODY, "slug": "alliance-digest",
                                                 "name": "Impostor"}, headers=auth)
    assert r.status_code == 409
    assert "alliance-digest" in r.json()["detail"]
    assert stored(db) == before


@pytest.mark.parametrize("slug", [
    "Field-Notes", "field notes", "-field", "field-", "field_notes", "fïeld", "", "a" * 65,
    "x/y", "../etc", "field-notes\n",
])
def test_bad_slug_is_422(client, auth, newsletter, db, slug):
    before = stored(db)
    r = client.post("/api/v1/newsletters", json={**BODY, "slug": slug}, headers=auth)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
    assert stored(db) == before


@pytest.mark.parametrize("field,value", [
    ("from_email", "not-an-address"),
    ("from_email", "notes@"),
    ("from_email", "notes@example.org\r\nBcc: everyone@example.org"),
    ("from_email", "x" * 250 + "@example.org"),
    ("reply_to", "editors at example.org"),
    ("name", "Field\r\nBcc: everyone@example.org"),
    ("name", "Field\nNotes"),
    ("name", "Field\rNotes"),
    ("name", ""),
    ("name", "   "),
    ("name", "n" * 201),
    ("from_name", "Team\nBcc: x@example.org"),
    ("cadence", "hourly"),
    ("footer", "nul \x00 byte"),
    ("description", "nul \x00 byte"),
    ("postal_address", "nul \x00 byte"),
    ("name", 42),
    ("unknown_field", "x"),
])
def test_bad_field_on_create_is_422(client, auth, newsletter, db, field, value):
    before = stored(db)
    r = client.post("/api/v1/newsletters", json={**BODY, field: value}, headers=auth)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
    assert stored(db) == before


def test_patch_changes_only_what_is_given(client, auth, newsletter, db):
    r = client.patch("/api/v1/newsletters/alliance-digest",
                     json={"name": "The Alliance Digest", "cadence": "weekly",
                           "reply_to": "Letters@Riverside-Water.example.org"}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "The Alliance Digest"
    assert body["cadence"] == "weekly"
    assert body["reply_to"] == "Letters@riverside-water.example.org"
    assert body["from_email"] == "digest@riverside-water.example.org"
    [row] = stored(db)
    assert row == ("alliance-digest", "The Alliance Digest", "Alliance Digest",
                   "digest@riverside-water.example.org", "Letters@riverside-water.example.org",
                   newsletter.footer, "weekly")
    # reply_to may be cleared; the sender may not.
    r = client.patch("/api/v1/newsletters/alliance-digest", json={"reply_to": None}, headers=auth)
    assert r.status_code == 200 and r.json()["reply_to"] is None


@pytest.mark.parametrize("body", [
    {"name": "Alliance\r\nDigest"},
    {"name": None},
    {"from_email": None},
    {"from_email": "nobody"},
    {"reply_to": "nobody"},
    {"cadence": None},
    {"cadence": "daily"},
    {"slug": "renamed"},
    {"footer": "nul \x00"},
    {"name": "n" * 201},
])
def test_bad_patch_is_422_and_changes_nothing(client, auth, newsletter, db, body):
    before = stored(db)
    r = client.patch("/api/v1/newsletters/alliance-digest", json=body, headers=auth)
    assert r.status_code == 422, r.text
    assert stored(db) == before


def test_unknown_newsletter_is_404(client, auth, newsletter):
    for slug in ("no-such-letter", "x" * 300, "%00", "nul%00byte"):
        r = client.get(f"/api/v1/newsletters/{slug}", headers=auth)
        assert r.status_code in (404, 422), (slug, r.status_code, r.text)
        assert r.json()["detail"]
    r = client.get("/api/v1/newsletters/no-such-letter", headers=auth)
    assert r.status_code == 404
    assert r.json() == {"detail": "no newsletter 'no-such-letter'"}
    r = client.patch("/api/v1/newsletters/no-such-letter", json={"name": "X"}, headers=auth)
    assert r.status_code == 404


@pytest.mark.parametrize("content", [
    b"{not json", b"[]", b"", b"\xff\xfe", b'{"name": NaN}', b'{"cadence_anchor": 1e999}',
])
def test_a_body_that_is_not_a_json_object_is_4xx(client, auth, newsletter, db, content):
    before = stored(db)
    for method, url in (("POST", "/api/v1/newsletters"),
                        ("PATCH", "/api/v1/newsletters/alliance-digest")):
        r = client.request(method, url, content=content,
                           headers={**auth, "content-type": "application/json"})
        # 400 is FastAPI's answer to bytes that are not text at all.
        assert r.status_code in (400, 422), (method, content, r.status_code, r.text)
        assert r.json()["detail"]
    assert stored(db) == before


def test_two_creates_of_one_slug_at_once_give_one_newsletter_and_a_409(newsletter, db):
    import threading

    from sqlalchemy import text

    from app.db import get_sessionmaker, session_scope
    from app.errors import Conflict
    from app.newsletters import service
    from app.newsletters.schemas import NewsletterCreate
    from tests.conftest import wait_until

    first = get_sessionmaker()()
    outcome: dict[str, str] = {}

    def second() -> None:
        try:
            with session_scope() as session:
                service.create(session, NewsletterCreate(**{**BODY, "name": "Second"}))
            outcome["second"] = "created"
        except Conflict as exc:
            outcome["second"] = f"409 {exc.detail}"
        except Exception as exc:  # a 500 in the API
            outcome["second"] = repr(exc)

    try:
        service.create(first, NewsletterCreate(**BODY))
        thread = threading.Thread(target=second)
        thread.start()
        wait_until(lambda: db.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")), what="the second insert to wait")
        first.commit()
    finally:
        first.close()
    thread.join(15)
    assert outcome == {"second": "409 a newsletter 'field-notes' exists already"}
    assert [row[:2] for row in stored(db)] == [("alliance-digest", "Alliance Digest"),
                                               ("field-notes", "Field Notes")]
