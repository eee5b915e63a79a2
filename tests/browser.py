"""The one Chromium/Playwright setup the browser tests share: Debian's Chromium driven by
Playwright, the app under uvicorn on a free port, screenshots kept on request.

A test module takes the fixtures by naming them at module level (pytest finds them there):
    from tests import browser as chromium
    server, browser, shots = chromium.server, chromium.browser, chromium.shots
    pytestmark = chromium.needs_chromium
(`make test` installs Chromium when it is missing). In a browser context made by
`new_context`, requests to the app's port go through, requests for the public base URL (the
links in issues and mails) are answered by the app too, and nothing else on the network is
reachable. Screenshots go to pytest's tmp dir, or to $MISSIVE_SCREENSHOTS when that is set.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: `make test` installs it"
)


@pytest.fixture(scope="module")
def server(test_env: dict[str, str]) -> Iterator[str]:
    """The app under uvicorn, in a thread of the test process, on a free port."""
    import uvicorn

    from app.main import create_app
    from tests.conftest import wait_until

    config = uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(),
                            log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise AssertionError("uvicorn stopped while starting")
        return bool(uv.started)

    wait_until(started, timeout=20, what="uvicorn to start")
    yield f"http://127.0.0.1:{config.port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, launched once per module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Path]:
    """Where a test saves its screenshots; copied to $MISSIVE_SCREENSHOTS when that is set."""
    yield tmp_path
    keep = os.environ.get("MISSIVE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, keep)


def new_context(browser: Any, server: str, width: int, *, bypass_csp: bool = False) -> Any:
    """A browser context `width` px wide that reaches the app only.

    bypass_csp: only so that axe-core can be injected into pages whose policy forbids scripts
    (the public pages); the pages themselves are unchanged."""
    from app.config import get_settings

    base = get_settings().base_url
    context = browser.new_context(viewport={"width": width, "height": 900},
                                  bypass_csp=bypass_csp)

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith(server + "/"):
            r.continue_()
        elif url.startswith(base + "/"):
            r.fulfill(response=r.fetch(url=server + url.removeprefix(base)))
        else:
            r.abort()  # no network beyond the app itself

    context.route("**/*", route)
    return context

