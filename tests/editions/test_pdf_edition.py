"""The PDF edition: what a reader finds in it, where it is public, how it is kept."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from app.issues.models import Issue

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = yaml.safe_load((ROOT / "samples" / "alliance-digest-2.22.yaml").read_text())
BASE = "https://news.example.org"


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "edition.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True,
                         check=True, timeout=60).stdout.decode()
    return " ".join(out.split())  # headlines wrap across lines


def _info(pdf: bytes, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "info.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, timeout=60)
    return dict(re.findall(r"^([^:]+):\s*(.*)$", out.stdout.decode(), re.M))


def _pages_render(pdf: bytes, tmp_path: Path) -> int:
    path = tmp_path / "render.pdf"
    path.write_bytes(pdf)
    folder = tmp_path / "pages"
    folder.mkdir(exist_ok=True)
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(path), str(folder / "page")],
                   check=True, capture_output=True, timeout=120)
    pngs = sorted(folder.glob("page*.png"))
    assert all(p.stat().st_size > 500 for p in pngs)
    return len(pngs)


def _sample_issue(db):
    db.expire_all()
    return db.scalars(select(Issue).where(Issue.volume == 2, Issue.number == 22)).one()


def test_the_sample_issue_in_print(client, auth, newsletter, db, tmp_path):
    issue = _sample_issue(db)
    answer = client.get(f"/api/v1/issues/{issue.id}/preview.pdf", headers=auth)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert 'filename="alliance-digest-2.22.pdf"' in answer.headers["content-disposition"]
    pdf = answer.content
    text = _text(pdf, tmp_path)
    for story in SAMPLE["stories"]:
        assert story["headline"] in text, story["headline"]
    assert "Vol 2.22" in text
    assert "Illustration: Riverside Water Alliance" in text  # the hero's credit
    assert "Subscribe to Alliance Digest: https://news.example.org/subscribe/alliance-digest" \
        in text
    assert "You receive the Alliance Digest because you signed up" in text  # the footer
    assert "Lead line funding tracker" in text  # the links block
    assert "Page 1 of" in text

    info = _info(pdf, tmp_path)
    assert info["Tagged"] == "yes"
    assert "A4" in info["Page size"]
    pages = int(info["Pages"])
    assert pages >= 2
    assert _pages_render(pdf, tmp_path) == pages

    fonts = subprocess.run(["pdffonts", "-"], input=pdf, capture_output=True, timeout=60)
    if fonts.returncode != 0:  # older poppler reads no stdin
        (tmp_path / "f.pdf").write_bytes(pdf)
        fonts = subprocess.run(["pdffonts", str(tmp_path / "f.pdf")], capture_output=True,
                               check=True, timeout=60)
    rows = fonts.stdout.decode().splitlines()[2:]
    assert rows and all(" yes " in row for row in rows)  # every font embedded

    letter = client.get(f"/api/v1/issues/{issue.id}/preview.pdf?size=letter", headers=auth)
    assert "612 x 792" in _info(letter.content, tmp_path)["Page size"]
    assert client.get(f"/api/v1/issues/{issue.id}/preview.pdf?size=a3",
                      headers=auth).status_code == 422


def test_preview_pdf_needs_an_editor(client, auth, newsletter, db):
    issue = _sample_issue(db)
    assert client.get(f"/api/v1/issues/{issue.id}/preview.pdf").status_code == 401
    assert client.get(f"/api/v1/issues/{issue.id}/preview.pdf?key=forged").status_code == 401
    preview_url = client.get(f"/api/v1/issues/{issue.id}", headers=auth).json()["preview_url"]
    key = preview_url.split("key=")[1]
    assert client.get(f"/api/v1/issues/{issue.id}/preview.pdf?key={key}").status_code == 200
    assert client.get("/api/v1/issues/999999/preview.pdf", headers=auth).status_code == 404


def test_public_only_once_sent(client, auth, newsletter, db, mark_sent, tmp_path):
    issue = _sample_issue(db)
    assert client.get("/archive/alliance-digest/2.22.pdf").status_code == 404
    assert client.get("/archive/alliance-digest/9.9.pdf").status_code == 404
    assert client.get("/archive/nope/2.22.pdf").status_code == 404
    mark_sent(issue, datetime(2027, 1, 14, 9, tzinfo=UTC))
    answer = client.get("/archive/alliance-digest/2.22.pdf")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert "14 January 2027" in _text(answer.content, tmp_path)
    index = client.get("/archive/alliance-digest").text
    assert f"{BASE}/archive/alliance-digest/2.22.pdf" in index
    # The web version still answers at its own address.
    assert client.get("/archive/alliance-digest/2.22").status_code == 200


def test_made_once_and_again_when_the_draft_changes(client, auth, newsletter, db, test_env,
                                                    tmp_path):
    issue = _sample_issue(db)
    folder = Path(test_env["MISSIVE_VAR_DIR"]) / "editions"
    url = f"/api/v1/issues/{issue.id}/preview.pdf"
    first = client.get(url, headers=auth).content
    kept = sorted(folder.glob(f"issue-{issue.id}-a4-*.pdf"))
    assert len(kept) == 1
    stamp = kept[0].stat().st_mtime_ns
    assert client.get(url, headers=auth).content == first
    assert kept[0].stat().st_mtime_ns == stamp  # served as kept, not made again

    stories = [*SAMPLE["stories"], {"headline": "A late addition to the issue", "body": "Yes."}]
    assert client.patch(f"/api/v1/issues/{issue.id}", headers=auth,
                        json={"stories": stories}).status_code == 200
    changed = client.get(url, headers=auth).content
    assert "A late addition to the issue" in _text(changed, tmp_path)
    now_kept = sorted(folder.glob(f"issue-{issue.id}-a4-*.pdf"))
    assert len(now_kept) == 1 and now_kept != kept  # the old one is gone


def test_links_can_point_at_the_pdf_edition(client, auth, newsletter, tmp_path):
    made = client.post("/api/v1/issues", headers=auth, json={
        "newsletter": "alliance-digest", "stories": [{"headline": "One", "body": "Text."}],
        "links": [{"label": "Download this issue (PDF)", "url": "@pdf-edition"}]})
    assert made.status_code == 201, made.text
    issue = made.json()
    assert issue["links"][0]["url"] == "@pdf-edition"  # as the editor wrote it
    html = client.get(f"/api/v1/issues/{issue['id']}/preview", headers=auth).text
    assert f'href="{BASE}/archive/alliance-digest/2.23.pdf"' in html
    text = client.get(f"/api/v1/issues/{issue['id']}/preview.txt", headers=auth).text
    assert f"{BASE}/archive/alliance-digest/2.23.pdf" in text
    bad = client.post("/api/v1/issues", headers=auth, json={
        "newsletter": "alliance-digest", "stories": [{"headline": "One", "body": "Text.",
                                                      "link": "@pdf-edition"}]})
    assert bad.status_code == 422  # only the links block knows the placeholder


def test_images_come_through_the_guarded_fetcher(client, auth, newsletter, feed_server, db,
                                                 tmp_path):
    png = (ROOT / "static" / "samples" / "alliance-digest-2.22-hero.png").read_bytes()
    good = feed_server.serve("/hero.png", png, "image/png")
    issue = _sample_issue(db)
    hero = {"url": good, "alt": "A hero", "credit": "Photo: served by the test"}
    client.patch(f"/api/v1/issues/{issue.id}", headers=auth, json={"hero_image": hero})
    pdf = client.get(f"/api/v1/issues/{issue.id}/preview.pdf", headers=auth).content
    assert "/hero.png" in feed_server.hits
    assert "Photo: served by the test" in _text(pdf, tmp_path)
    with_image = len(pdf)

    hidden = f"http://127.0.0.1:{feed_server.port + 1}/hero.png"  # not on the allow list
    client.patch(f"/api/v1/issues/{issue.id}", headers=auth,
                 json={"hero_image": {**hero, "url": hidden}})
    pdf = client.get(f"/api/v1/issues/{issue.id}/preview.pdf", headers=auth).content
    assert pdf.startswith(b"%PDF-")
    assert len(pdf) < with_image - 10_000  # printed without the image, not fetched
    assert "Photo: served by the test" in _text(pdf, tmp_path)


def test_hostile_content_still_prints(newsletter_info, tmp_path):
    from app.editions.pdf import render_pdf
    from app.issues.schemas import IssueContent, Story

    huge = "Pneumonoultramicroscopic" * 400
    stories = [Story.model_construct(
        headline=f"<script>alert({i})</script> Story {i} {huge[:300] if i % 50 == 0 else ''}",
        body=f"<script>document.write('x')</script> {huge if i % 20 == 0 else 'Short text.'}"
             f"\n\n<img src=x onerror=alert(1)> <iframe src='https://evil.example'></iframe>",
        link=None) for i in range(200)]
    content = IssueContent.model_construct(
        volume=9, number=99, subject="<b>Hostile</b> issue", preheader="", hero_image=None,
        stories=stories, links=[], footer="</footer><script>x()</script>")
    started = time.monotonic()
    pdf = render_pdf(content, newsletter_info, base_url=BASE, date=datetime.now(UTC))
    elapsed = time.monotonic() - started
    assert elapsed < 240, f"took {elapsed:.0f}s"  # a generous ceiling: no runaway render
    info = _info(pdf, tmp_path)
    assert int(info["Pages"]) > 10
    text = _text(pdf, tmp_path)
    assert "<script>alert(0)</script> Story 0" in text  # shown as text, never run
    assert "Story 199" in text
    assert "<b>Hostile</b> issue" in text


@pytest.fixture
def newsletter_info():
    from app.issues.render import NewsletterInfo

    return NewsletterInfo(slug="alliance-digest", name="Alliance Digest",
                          from_name="Alliance Digest",
                          from_email="digest@riverside-water.example.org",
                          footer="Footer text.", postal_address="12 Weir Lane")
