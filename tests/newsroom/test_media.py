"""Uploaded hero images: decoded to be believed, stored by hash, served as images only."""

from __future__ import annotations

import io

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
    assert url.startswith("https://news.example.org/media/") and url.endswith(".png")
    served = client.get(url.removeprefix("https://news.example.org"))
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
