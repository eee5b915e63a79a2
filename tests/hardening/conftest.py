"""A real `missive serve` process (uvicorn) on the test database, for what only a server shows:
the event loop, memory, disconnects."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, wait_until


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def start_server(env: dict[str, str], log: Path) -> Server:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env}, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError("`missive serve` stopped while starting")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, timeout=90, what="`missive serve` to answer /healthz")
    except AssertionError as exc:
        proc.kill()
        raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
    return Server(url, proc, log)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="module")
def server(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """`missive serve` on the test database."""
    s = start_server(test_env, tmp_path_factory.mktemp("server") / "serve.log")
    yield s
    stop_server(s)


@pytest.fixture
def viewer_token(test_env: dict[str, str]) -> str:
    from app.auth import service as auth
    from app.db import session_scope

    with session_scope() as session:
        return auth.create_token(session, name="viewer", role="viewer")


@pytest.fixture
def make_sent_issue(client: object, auth: dict[str, str], db: object) -> object:
    """A sent issue of the sample newsletter; returns the path of its web version."""
    from datetime import UTC, datetime

    from app.db import session_scope
    from app.issues import service

    def make() -> str:
        with session_scope() as session:
            issue = service.create(session, {
                "newsletter": "alliance-digest",
                "stories": [{"headline": "A story", "body": "Some text."}]})
            service.set_status(session, issue, "sending")
            service.set_status(session, issue, "sent", at=datetime.now(UTC))
            return f"/archive/alliance-digest/{issue.volume}.{issue.number}"

    return make
