"""Uploaded hero images: decoded to be believed, stored by hash, served as images only."""

from __future__ import annotations

import io
import re

import pytest

from tests.newsroom.test_issue_pages import _form


def _png(width: int = 40, height: int = 20) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 140)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def draft(newsletter, db):
    from app.issues import service as issues

    issue = issues.create(db, {"newsletter": "alliance-digest", "stories": [{"headline": "A"}]})
    db.commit()
    return issue


def test_uploaded_image_becomes_the_hero_and_is_served(signed_in, draft, db, client):
    editor = signed_in("editor")
    page = editor.get(f"/admin/issues/{draft.id}")
    data = _form(page.text, hero_alt="A blue square", action="save")
    r = editor.post(f"/admin/issues/{draft.id}", data=data,
                    files={"hero_file": ("hero.png", _png(), "image/png")},
                    follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    db.expire_all()
    db.refresh(draft)
    url = draft.hero_image["url"]
    # Stored as a path on this server: a change of host or port breaks no link.
    assert re.fullmatch(r"/media/[0-9a-f]{32}\.png", url), url
    served = client.get(url)
    assert served.status_code == 200 and served.content == _png()
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name,body", [
    ("image.png", b"<html><script>alert(1)</script></html>"),
    ("image.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'),
    ("broken.png", _png()[:60]),
])
def test_a_file_that_is_not_a_usable_image_is_refused(signed_in, draft, db, name, body):
    editor = signed_in("editor")
    page = editor.get(f"/admin/issues/{draft.id}")
    before = draft.updated_at
    r = editor.post(f"/admin/issues/{draft.id}", data=_form(page.text, action="save"),
                    files={"hero_file": (name, body, "image/png")})
    assert r.status_code == 422
    assert 'id="e-hero_file"' in r.text and "PNG, JPEG, GIF or WebP" in r.text
    db.expire_all()
    db.refresh(draft)
    assert draft.hero_image is None and draft.updated_at == before


def test_too_large_and_odd_names(signed_in, draft, client, monkeypatch):
    from app.newsroom import media

    monkeypatch.setattr(media, "MAX_IMAGE_BYTES", 1000)
    editor = signed_in("editor")
    page = editor.get(f"/admin/issues/{draft.id}")
    r = editor.post(f"/admin/issues/{draft.id}", data=_form(page.text, action="save"),
                    files={"hero_file": ("big.png", _png(400, 400) + b"\0" * 2000, "image/png")})
    assert r.status_code == 422 and "larger than" in r.text
    for name in ("..%2Fsecret_key", "x.html", "0" * 32 + ".svg", "0" * 32 + ".png"):
        assert client.get(f"/media/{name}").status_code == 404, name


# --- links to our own files survive a change of host or port ----------------------------------


@pytest.fixture
def moved(monkeypatch):
    """Switch the running app to another base URL (as after `PORT=8100 make run`); returns a
    client of the app on that host."""
    from fastapi.testclient import TestClient

    from app.config import get_settings
    from app.main import create_app

    def move(base: str) -> TestClient:
        monkeypatch.setenv("MISSIVE_BASE_URL", base)
        get_settings.cache_clear()
        return TestClient(create_app(), base_url=base)

    yield move
    monkeypatch.undo()
    get_settings.cache_clear()


def _img_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]* src="([^"]+)"', html)


def test_an_issue_made_on_one_host_shows_its_images_on_another(
        signed_in, draft, db, client, auth, moved):
    from sqlalchemy import update

    from app.db import utcnow
    from app.issues.models import Issue
    from app.media_links import media_dir

    editor = signed_in("editor")
    page = editor.get(f"/admin/issues/{draft.id}")
    r = editor.post(f"/admin/issues/{draft.id}", data=_form(page.text, hero_alt="Blue",
                                                               action="save"),
                    files={"hero_file": ("hero.png", _png(), "image/png")},
                    follow_redirects=False)
    assert r.status_code == 303
    # An issue loaded from a file under the first host: its /static link is kept as a path.
    sample = {"newsletter": "alliance-digest", "volume": 9, "number": 1,
              "stories": [{"headline": "B"}],
              "hero_image": {"url": "https://news.example.org/static/samples/"
                                    "alliance-digest-2.22-hero.png", "alt": "River"}}
    created = client.post("/api/v1/issues", headers=auth, json=sample)
    assert created.status_code == 201, created.text
    assert created.json()["hero_image"]["url"].startswith("https://news.example.org/static/")
    db.expire_all()
    stored = db.get(Issue, created.json()["id"])
    assert stored.hero_image["url"] == "/static/samples/alliance-digest-2.22-hero.png"
    # Both sent, so the archive and its PDF edition show them.
    db.execute(update(Issue).values(status="sent", sent_at=utcnow()))
    db.commit()

    other = moved("http://127.0.0.1:8100")
    for issue in (draft, stored):
        db.refresh(issue)
        out = other.get(f"/api/v1/issues/{issue.id}", headers=auth).json()
        assert out["hero_image"]["url"].startswith("http://127.0.0.1:8100/")
        preview = other.get(out["preview_url"].removeprefix("http://127.0.0.1:8100"))
        archived = other.get(f"/archive/alliance-digest/{issue.volume}.{issue.number}")
        for html in (preview.text, archived.text):
            (hero,) = [src for src in _img_sources(html) if "/media/" in src
                       or "/static/samples/" in src]
            assert hero.startswith("http://127.0.0.1:8100/"), hero
            image = other.get(hero.removeprefix("http://127.0.0.1:8100"))
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    # The PDF edition reads our own files from disk: never over HTTP, whatever the host.
    from app import fetcher
    from app.editions import pdf

    def no_http(url, **_):
        raise AssertionError(f"fetched {url} over HTTP")

    name = draft.hero_image["url"].removeprefix("/media/")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fetcher, "fetch", no_http)
        images = pdf.guarded_images("http://127.0.0.1:8100")
        got = images.fetch(f"http://127.0.0.1:8100/media/{name}")
        assert got.read() == (media_dir() / name).read_bytes()
        assert images.fetch("http://127.0.0.1:8100/static/samples/alliance-digest-2.22-hero.png"
                            ).read()[:4] == b"\x89PNG"


def test_links_stored_before_the_fix_follow_the_current_host(newsletter, db, moved):
    """Issues saved with absolute links to the server of the day still show their images."""
    from app.issues import service as issues
    from app.media_links import media_dir

    media_dir().mkdir(parents=True, exist_ok=True)
    name = "ab" * 16 + ".png"
    (media_dir() / name).write_bytes(_png())
    issue = issues.create(db, {"newsletter": "alliance-digest", "stories": [
        {"headline": "A", "link": "https://elsewhere.example.com/media/" + "cd" * 16 + ".png"}]})
    # As an older Missive stored them: absolute, on the base URL of that day.
    issue.hero_image = {"url": f"https://old-host.example.net/media/{name}", "alt": "x"}
    issue.links = [{"label": "Map", "url": "http://127.0.0.1:8000/static/samples/"
                                            "alliance-digest-2.22-hero.png"},
                   {"label": "Elsewhere", "url": "http://127.0.0.1:8000/not-ours"}]
    db.commit()
    moved("http://127.0.0.1:8100")
    content = issues.content_of(issue)
    assert content.hero_image is not None
    assert content.hero_image.url == f"http://127.0.0.1:8100/media/{name}"
    assert content.links[0].url == ("http://127.0.0.1:8100/static/samples/"
                                    "alliance-digest-2.22-hero.png")
    # Not files of ours: left as they were.
    assert content.links[1].url == "http://127.0.0.1:8000/not-ours"
    assert content.stories[0].link == "https://elsewhere.example.com/media/" + "cd" * 16 + ".png"


def test_which_links_count_as_our_own(test_env):
    from app.media_links import absolute, for_storage

    under = "https://example.org/letters"  # Missive served below a path
    assert for_storage("https://example.org/letters/static/a.png", under) == "/static/a.png"
    assert absolute("/static/a.png", under) == "https://example.org/letters/static/a.png"
    assert for_storage("https://example.org/shop/a.png", under) == "https://example.org/shop/a.png"
    assert for_storage("https://cdn.example.net/static/samples/alliance-digest-2.22-hero.png",
                       under).startswith("https://cdn.example.net/")  # not loopback, not media
    # A loopback link is ours only for a file we hold, and never outside the static folder.
    for path in ("/static/../../etc/passwd", "/static/no-such.png", "/media/x.png"):
        assert absolute(f"http://127.0.0.1:8000{path}", under) == f"http://127.0.0.1:8000{path}"
