"""A real `missive serve` process, for what only a running server shows (logs, proxies)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, wait_until


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
            env={**os.environ, **env}, cwd=ROOT, stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=60, what="the web server")

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serve(test_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start `missive serve` with extra settings: `serve(MISSIVE_LOG_FORMAT="json")`."""
    servers: list[Server] = []

    def start(**settings: str) -> Server:
        server = Server({**test_env, **settings}, tmp_path / f"web-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
