"""An editor's whole journey in a real browser (Debian's Chromium driven by Playwright).

Sign in, compose an issue with three stories and an uploaded image, fix a validation error,
look at the preview at both widths, send a test copy (it arrives at the test SMTP server),
send now after the confirmation, watch the send page reach `done` by itself, find a reader and
unsubscribe them, and import a CSV whose bad line is reported. Every page is photographed at
375 and 1280 px and must not scroll sideways. The app runs under uvicorn on a free port and
the browser talks to it there (Chromium keeps Secure cookies on 127.0.0.1); requests for the
public base URL (the issue's images) are answered by it too, and nothing else is reachable.
Screenshots go to pytest's tmp dir, or to $MISSIVE_SCREENSHOTS when that is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import browser as chromium
from tests.newsroom.conftest import PASSWORD

# The shared Chromium/Playwright setup (tests/browser.py): its fixtures, and a context that
# reaches the app only.
server, browser, shots = chromium.server, chromium.browser, chromium.shots
_context = chromium.new_context
WIDTHS = (375, 1280)

pytestmark = chromium.needs_chromium

# Elements past the viewport's edge, except inside a container meant to scroll sideways
# (a wide table in its own scroll box does not make the page scroll).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const over = [];
  const scrolls = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll') return true;
    }
    return false;
  };
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || scrolls(el)) continue;
    if (r.right > width + 1 || r.left < -1) {
      const where = `${Math.round(r.left)}..${Math.round(r.right)}`;
      over.push(`${el.tagName}#${el.id}.${el.className} ${where}`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, over: over.slice(0, 10)};
}"""


def _photograph(page: Any, shots: Path, name: str) -> None:
    """A full-page screenshot, and the page must not scroll sideways."""
    width = page.viewport_size["width"]
    page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    result = page.evaluate(OVERFLOW)
    assert result["scrollWidth"] <= result["width"], f"{name} at {width}px: {result}"
    assert result["over"] == [], f"{name} at {width}px: {result['over']}"


@pytest.fixture
def readers(newsletter: Any, db: Any) -> list[str]:
    from app.subscribers.models import Subscriber, Subscription

    emails = [f"reader{i}@example.org" for i in range(3)]
    for email in emails:
        s = Subscriber(email=email, email_key=email, name="A Reader")
        db.add(s)
        db.flush()
        db.add(Subscription(subscriber_id=s.id, newsletter_id=newsletter.id, status="active"))
    db.commit()
    return emails


def test_editor_journey(server, browser, shots, worker, inbox, make_user, readers, db):
    from sqlalchemy import select

    from app.issues.models import Issue
    from app.sending.models import Send

    make_user("editor@example.org", "editor")
    context = _context(browser, server, 1280)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(server + "/")
        assert page.url == server + "/admin/sign-in"
        _photograph(page, shots, "sign-in")
        page.get_by_label("Email address").fill("editor@example.org")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(server + "/admin")
        assert page.get_by_role("heading", name="Dashboard").is_visible()
        _photograph(page, shots, "dashboard")

        page.get_by_role("link", name="Write an issue").first.click()
        page.wait_for_url("**/admin/issues/new**")
        page.locator("#f-subject").fill("Alliance Digest: the journey")
        page.locator("#f-story-0-body").fill("A story whose headline is missing.")
        page.get_by_role("button", name="Add a story").click()
        page.locator("#f-story-1-headline").fill("Second story")
        page.locator("#f-story-1-body").fill("The **second** story.")
        page.get_by_role("button", name="Add a story").click()
        page.locator("#f-story-2-headline").fill("Third story")
        page.locator("#f-story-2-body").fill("The third.")
        page.get_by_role("button", name="Save draft").first.click()
        # The problem is shown beside its field, and nothing was saved.
        error = page.locator("#e-story-0-headline")
        assert error.inner_text() == "a story needs a headline"
        assert page.locator("#f-story-0-headline").get_attribute("aria-invalid") == "true"
        _photograph(page, shots, "compose-error")
        page.locator("#f-story-0-headline").fill("First story")
        page.locator("#f-hero_file").set_input_files(files=[{
            "name": "hero.png", "mimeType": "image/png", "buffer": _png()}])
        page.locator("#f-hero_alt").fill("A blue square")
        page.get_by_role("button", name="Save draft").first.click()
        page.wait_for_url("**/admin/issues/*?notice=created")
        assert page.get_by_text("Draft created.").is_visible()
        issue = db.scalars(select(Issue).where(Issue.subject == "Alliance Digest: the journey")
                           ).one()
        assert [s["headline"] for s in issue.stories] == [
            "First story", "Second story", "Third story"]
        assert "/media/" in issue.hero_image["url"]

        # The preview, at both widths, is the reader's HTML.
        for title in ("Preview at phone width", "Preview at desktop width"):
            frame = page.frame_locator(f'iframe[title="{title}"]')
            frame.get_by_text("Third story").first.wait_for()
        phone = page.locator('iframe[title="Preview at phone width"]').bounding_box()
        assert phone is not None and 370 <= phone["width"] <= 380
        _photograph(page, shots, "compose")

        page.locator("#f-test_to").fill("tester@example.org")
        page.get_by_role("button", name="Send test").click()
        assert page.get_by_text("Test copies are on their way.").is_visible()
        inbox.wait_for(1, timeout=60)
        test_copy = inbox.to("tester@example.org")
        assert test_copy and "Alliance Digest: the journey" in test_copy[0]["Subject"]

        page.get_by_role("button", name="Review and send…").click()
        assert page.get_by_text("3 readers").first.is_visible()
        _photograph(page, shots, "confirm-send")
        page.get_by_role("button", name="Send now to 3 readers").click()
        page.wait_for_url("**/admin/sends/*")
        # The page follows the send by itself until it is done.
        page.locator("#progress .status.done").wait_for(timeout=90_000)
        assert page.locator('[data-field="sent"]').inner_text() == "3"
        _photograph(page, shots, "send")
        inbox.wait_for(4, timeout=60)
        assert sorted(r for r in readers if inbox.to(r)) == readers
        send = db.scalars(select(Send).where(Send.issue_id == issue.id)).one()
        assert send.status == "done"

        # Find a reader and unsubscribe them.
        page.get_by_role("link", name="Subscribers").click()
        page.get_by_label("Address or name").fill("reader1")
        page.get_by_role("button", name="Find").click()
        page.get_by_role("link", name="reader1@example.org").click()
        page.get_by_role("button", name="Unsubscribe from Alliance Digest").click()
        assert page.get_by_text("Unsubscribed.").is_visible()
        assert page.locator(".status.unsubscribed").first.is_visible()

        # Import a CSV with one bad line: the line is reported, the rest go in.
        page.get_by_role("link", name="Subscribers").click()
        page.locator("#i-file").set_input_files(files=[{
            "name": "readers.csv", "mimeType": "text/csv",
            "buffer": b"email,name\nnew1@example.org,New One\nnot-an-address,Bad\n"
                      b"new2@example.org,New Two\n"}])
        page.get_by_role("button", name="Import").click()
        # A worker imports it; the import page refreshes itself until it is done.
        report = page.locator("#import-report[data-finished]")
        report.wait_for(timeout=60_000)
        assert "2 created" in report.inner_text()
        assert "1 line with errors" in report.inner_text()
        assert report.locator("td").first.inner_text() == "3"
        _photograph(page, shots, "import-report")
    finally:
        context.close()


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (600, 300), (30, 90, 140)).save(out, format="PNG")
    return out.getvalue()


AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def everything(newsletter: Any, db: Any, make_user: Any) -> dict[str, Any]:
    """One of each thing a page shows: a subscriber, a send with a bounce, a suppression."""
    from datetime import timedelta

    from app import demo
    from app.bounces.models import BounceRecord
    from app.db import utcnow
    from app.issues import service as issues
    from app.sending import service as sending
    from app.sending.models import Delivery
    from app.subscribers.models import ImportJob, Subscriber, Subscription, Suppression

    issue = demo.sample_issue(db, newsletter)
    reader = Subscriber(email="reader@example.org", email_key="reader@example.org",
                        name="A Reader", attributes={"city": "Oslo"})
    db.add(reader)
    db.flush()
    subscription = Subscription(subscriber_id=reader.id, newsletter_id=newsletter.id,
                                status="active")
    db.add(subscription)
    db.add(Suppression(email_key="gone@example.org", reason="bounced", detail="5.1.1"))
    send = sending.schedule(db, issue.id, at=utcnow() + timedelta(days=1),
                            next_cadence_slot=False, actor="tests")
    db.flush()
    # A row left unknown (the send page lists it with its actions) and a finished import.
    db.add(Delivery(send_id=send.id, subscriber_id=reader.id, subscription_id=subscription.id,
                    status="unknown", started_at=utcnow(),
                    smtp_reply="connection lost after the message was sent"))
    job = ImportJob(newsletter_id=newsletter.id, status="done", filename="readers.csv",
                    size_bytes=60, bytes_done=60, created=2, error_count=1,
                    errors=[{"line": 3, "detail": "not-an-address is not an email address"}],
                    started_at=utcnow(), finished_at=utcnow())
    db.add(job)
    db.add(BounceRecord(email_key="gone@example.org", kind="hard", status_code="5.1.1",
                        diagnostic="550 5.1.1 no such user", source="dsn", action="suppressed",
                        send_id=send.id))
    draft = issues.create(db, {"newsletter": "alliance-digest",
                               "stories": [{"headline": "A draft"}]})
    make_user("admin@example.org", "admin")
    db.commit()
    return {"issue": draft.id, "send": send.id, "subscriber": reader.id, "import": job.id}


def _sign_in(page: Any, server: str, email: str) -> None:
    page.goto(server + "/admin/sign-in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server + "/admin")


@pytest.mark.skipif(not AXE.exists(), reason="axe-core is missing: `make test` installs it")
def test_every_page_passes_axe_and_fits(server, browser, shots, everything):
    """axe-core in the browser on every admin page and the public pages: no serious or
    critical violation; and each page at both widths without sideways scrolling."""
    pages = [("/admin/sign-in", "sign-in"), ("/admin", "dashboard"),
             ("/admin/issues", "issues"), (f"/admin/issues/{everything['issue']}", "compose"),
             ("/admin/issues/new", "new-issue"),
             (f"/admin/issues/{everything['issue']}/send?mode=now", "confirm-send"),
             ("/admin/sends", "sends"), (f"/admin/sends/{everything['send']}", "send"),
             ("/admin/subscribers", "subscribers"),
             (f"/admin/subscribers/{everything['subscriber']}", "subscriber"),
             (f"/admin/subscribers/{everything['subscriber']}/erase", "erase-subscriber"),
             (f"/admin/subscribers/imports/{everything['import']}", "import"),
             ("/admin/subscribers/new", "new-subscriber"), ("/admin/bounces", "bounces"),
             ("/admin/users", "users"), ("/admin/newsletters", "newsletters"),
             ("/admin/newsletters/alliance-digest", "newsletter"),
             ("/admin/account", "account"), ("/subscribe/alliance-digest", "subscribe"),
             ("/archive/alliance-digest", "archive")]
    found: dict[str, list[str]] = {}
    for width in WIDTHS:
        context = _context(browser, server, width, bypass_csp=True)
        page = context.new_page()
        try:
            _sign_in(page, server, "admin@example.org")
            for path, name in pages:
                if name == "sign-in":
                    continue
                response = page.goto(server + path)
                assert response is not None and response.status == 200, path
                _photograph(page, shots, name)
                if width != WIDTHS[0]:
                    continue
                page.add_script_tag(path=str(AXE))
                result = page.evaluate(
                    "async () => (await axe.run({exclude: [['iframe']]})).violations"
                    ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
                    ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))")
                if result:
                    found[path] = result
        finally:
            context.close()
    assert found == {}, found


def test_compose_controls_are_reachable_by_keyboard(server, browser, everything):
    """Tab alone reaches every link, field and button of the compose page, in order."""
    context = _context(browser, server, 1280)
    page = context.new_page()
    try:
        _sign_in(page, server, "admin@example.org")
        page.goto(server + f"/admin/issues/{everything['issue']}")
        # Number every control a keyboard user must reach. In a radio group only the checked
        # radio is a Tab stop (arrow keys move within it), as browsers do.
        expected = page.evaluate("""() => {
          const sel = 'a[href], button, input:not([type=hidden]), select, textarea, iframe';
          const all = [...document.querySelectorAll(sel)]
            .filter(e => !e.disabled && e.offsetParent !== null)
            .filter(e => e.type !== 'radio' || e.checked);
          all.forEach((e, i) => e.setAttribute('data-kb', String(i)));
          return all.length;
        }""")
        reached: set[int] = set()
        # The previews' own links are Tab stops too (an email has many), hence the margin.
        for _ in range(expected + 300):
            if len(reached) == expected:
                break
            page.keyboard.press("Tab")
            mark = page.evaluate("() => document.activeElement.getAttribute('data-kb')")
            if mark is not None:
                reached.add(int(mark))
        assert reached == set(range(expected)), sorted(set(range(expected)) - reached)
    finally:
        context.close()
