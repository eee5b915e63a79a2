"""A real browser opens the preview and the archive at phone and desktop widths.

Debian's Chromium, driven by Playwright (`make test` installs it when it is missing). The app
runs under uvicorn on a free port; the browser's requests for the public base URL
(https://news.example.org) are answered by it, everything else on the network is refused.
Screenshots are kept in pytest's tmp dir, or in $MISSIVE_SCREENSHOTS when that is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from issuedata import BASE

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = (375, 1024)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: `make test` installs it"
)

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


@pytest.fixture(scope="module")
def server(test_env: dict[str, str]) -> Iterator[str]:
    import uvicorn

    from app.main import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    keep = os.environ.get("MISSIVE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, keep)


def _open(browser: Any, server: str, url: str, width: int, shot: Path) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": width, "height": 900})

    def route(r: Any) -> None:
        if r.request.url.startswith(BASE + "/"):
            r.fulfill(response=r.fetch(url=server + r.request.url.removeprefix(BASE)))
        else:
            r.abort()  # no network beyond the app itself

    context.route("**/*", route)
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
