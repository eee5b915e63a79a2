"""A real browser opens the preview and the archive at phone and desktop widths, and goes
through the reader pages (sign-up form, its answer, unsubscribe) at phone width.

Debian's Chromium, driven by Playwright, set up as every browser test does (tests/browser.py):
the app under uvicorn on a free port; the browser's requests for the public base URL
(https://news.example.org) are answered by it, everything else on the network is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from issuedata import BASE

from tests import browser as chromium

# The shared Chromium/Playwright setup (tests/browser.py).
server, browser, shots = chromium.server, chromium.browser, chromium.shots
WIDTHS = (375, 1024)

pytestmark = chromium.needs_chromium

OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const over = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > width + 1 || r.left < -1) {
      over.push(`${el.tagName}.${el.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, over: over.slice(0, 10)};
}"""


def _open(browser: Any, server: str, url: str, width: int, shot: Path) -> dict[str, Any]:
    context = chromium.new_context(browser, server, width)
    page = context.new_page()
    try:
        response = page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, url
        page.screenshot(path=str(shot), full_page=True)
        result: dict[str, Any] = page.evaluate(OVERFLOW)
        result["broken_images"] = page.evaluate(
            "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.src)")
        return result
    finally:
        context.close()


def _assert_fits(result: dict[str, Any], what: str) -> None:
    assert result["scrollWidth"] <= result["width"], f"{what} scrolls sideways: {result}"
    assert result["over"] == [], f"{what}: elements past the edge: {result['over']}"
    assert result["broken_images"] == [], f"{what}: images did not load"


def test_preview_fits_phone_and_desktop(server, browser, shots, client, newsletter, auth, db):
    from app.issues.models import Issue

    issue = db.query(Issue).filter_by(volume=2, number=22).one()
    url = client.get(f"/api/v1/issues/{issue.id}", headers=auth).json()["preview_url"]
    for width in WIDTHS:
        shot = shots / f"preview-{width}.png"
        _assert_fits(_open(browser, server, url, width, shot), f"preview at {width}px")
        assert shot.stat().st_size > 10_000


def test_archive_fits_phone_and_desktop(server, browser, shots, newsletter, db, mark_sent):
    from datetime import UTC, datetime

    from app.issues.models import Issue

    mark_sent(db.query(Issue).filter_by(volume=2, number=22).one(),
              datetime(2027, 1, 14, 7, 0, tzinfo=UTC))
    for width in WIDTHS:
        for name, path in (("archive", "/archive/alliance-digest"),
                           ("archive-issue", "/archive/alliance-digest/2.22")):
            shot = shots / f"{name}-{width}.png"
            _assert_fits(_open(browser, server, BASE + path, width, shot),
                         f"{path} at {width}px")


def test_the_overflow_check_sees_overflow(browser):
    page = browser.new_page(viewport={"width": 375, "height": 600})
    try:
        page.set_content('<body style="margin:0"><table width="600"><tr><td>x</td></tr>'
                         "</table></body>")
        result = page.evaluate(OVERFLOW)
    finally:
        page.close()
    assert result["scrollWidth"] > 375 and result["over"]


AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("async () => (await axe.run()).violations"
           ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
           ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))")


@pytest.mark.skipif(not AXE.exists(), reason="axe-core is missing: `make test` installs it")
def test_reader_pages_speak_plainly_and_fit_a_phone(server, browser, shots, newsletter, db):
    """A reader at 375 px: a mistake in the form is named by its field, which takes the focus;
    the pages after signing up and unsubscribing lead on to the archive; axe finds nothing
    serious on any of them."""
    from sqlalchemy import select

    from app.signup.service import unsubscribe_token
    from app.subscribers.models import Subscription
    from tests.conftest import wait_until

    context = chromium.new_context(browser, server, 375, bypass_csp=True)
    page = context.new_page()
    found: dict[str, list[str]] = {}

    def look(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}-375.png"), full_page=True)
        fits = page.evaluate(OVERFLOW)
        assert fits["scrollWidth"] <= fits["width"] and fits["over"] == [], (name, fits)
        page.add_script_tag(path=str(AXE))
        if violations := page.evaluate(SERIOUS):
            found[name] = violations

    try:
        page.goto(server + "/subscribe/alliance-digest")
        page.get_by_role("button", name="Subscribe").click()
        assert page.locator("#email-error").inner_text() == "Please enter your email address."
        assert page.evaluate("() => document.activeElement.id") == "email"
        assert page.get_by_label("Email address").get_attribute(
            "aria-describedby") == "email-error"
        look("subscribe-error")
        page.get_by_label("Email address").fill("reader@example")
        page.get_by_role("button", name="Subscribe").click()
        assert page.locator("#email-error").inner_text().startswith(
            "That doesn't look like an email address")
        page.get_by_label("Email address").fill("reader@example.org")
        page.get_by_role("button", name="Subscribe").click()
        assert page.get_by_role("heading", name="Check your inbox").is_visible()
        look("subscribe-answer")

        sub = wait_until(lambda: db.scalars(select(Subscription)).first(), what="the sign-up")
        sub.status = "active"
        db.commit()
        page.goto(f"{server}/u/{unsubscribe_token(sub)}")
        page.get_by_role("button", name="Unsubscribe").click()
        assert page.get_by_role("heading", name="You are unsubscribed").is_visible()
        look("unsubscribed")
        page.get_by_role("link", name="Read past issues of Alliance Digest").click()
        assert page.get_by_role("heading", name="Alliance Digest").is_visible()
    finally:
        context.close()
    assert found == {}, found
