"""Fixtures for sending: many readers, an issue, a restartable SMTP server, worker processes."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import insert, select

from tests.conftest import ROOT, Inbox, SmtpHandler, _reset_caches, free_port, wait_until

SAMPLE_ISSUE = {
    "newsletter": "alliance-digest",
    "volume": 3,
    "number": 1,
    "subject": "Alliance Digest Vol 3.1: test issue",
    "preheader": "A short issue for the sending tests",
    "hero_image": {"url": "https://news.example.org/hero.jpg", "alt": "A weir at dawn",
                   "credit": "Image source: the tests"},
    "stories": [
        {"headline": "First story", "body": "One paragraph.\n\nAnother paragraph."},
        {"headline": "Second story", "body": "Short and plain.",
         "link": "https://news.example.org/second"},
    ],
    "links": [{"label": "Download this issue (PDF)", "url": "https://news.example.org/3-1.pdf"}],
}


class Sink:
    """The suite's SMTP handler on a port of its own, which a test can stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(SmtpHandler(self.inbox), hostname="127.0.0.1",
                                     port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def envelopes(self) -> list[tuple[str, str]]:
        """(envelope sender, recipient) of each message received, in order."""
        with self.inbox.lock:
            return [(mail_from, r) for mail_from, rcpts, _ in self.inbox.messages
                    for r in rcpts]

    def recipients(self) -> list[str]:
        return [r for _, r in self.envelopes]


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def issue(newsletter: Any) -> Any:
    from app.db import session_scope
    from app.issues import service as issues

    with session_scope() as session:
        created = issues.create(session, SAMPLE_ISSUE)
        session.flush()
        issue_id = created.id
    return issue_id


def add_readers(count: int, *, prefix: str = "reader", status: str = "active") -> list[str]:
    """`count` subscribers on the sample newsletter, inserted in bulk; their addresses."""
    from app.db import session_scope, utcnow
    from app.newsletters.models import Newsletter
    from app.subscribers.models import Subscriber, Subscription

    now = utcnow()
    addresses = [f"{prefix}{i:07d}@example.org" for i in range(count)]
    with session_scope() as session:
        newsletter_id = session.scalar(select(Newsletter.id).where(
            Newsletter.slug == "alliance-digest"))
        for start in range(0, count, 5000):
            chunk = addresses[start:start + 5000]
            ids = session.execute(
                insert(Subscriber).returning(Subscriber.id),
                [{"email": a, "email_key": a, "name": f"Reader {a[:-12]}", "attributes": {},
                  "created_at": now, "updated_at": now} for a in chunk],
            ).scalars().all()
            session.execute(insert(Subscription), [
                {"subscriber_id": i, "newsletter_id": newsletter_id, "status": status,
                 "source": "test", "created_at": now, "confirmed_at": now} for i in ids])
    return addresses


class Workers:
    """`missive worker` processes (each its own process group, so kill -9 takes the pool)."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, count: int = 1, **overrides: str) -> None:
        for _ in range(count):
            log = self.folder / f"worker-{len(self.logs)}.log"
            env = {**os.environ, **self.env, **overrides}
            proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--concurrency", "1"],
                env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.procs.append(proc)
            self.logs.append(log)
            # Both of its Celery workers (bulk, transactional) say "ready.".
            wait_until(lambda log=log, proc=proc: log.read_bytes().count(b" ready.") >= 2
                       or proc.poll() is not None, timeout=90, what="a worker to start")
            assert proc.poll() is None, log.read_text()[-3000:]

    def kill9(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.logs)


@pytest.fixture
def workers(test_env: dict[str, str], sink: Sink, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes mailing to `sink`. They and this test process use a Redis prefix of
    their own, so the suite's shared worker (which mails elsewhere) never takes their tasks."""
    prefix = f"{test_env['MISSIVE_REDIS_PREFIX']}{secrets.token_hex(3)}:"
    saved = os.environ.get("MISSIVE_REDIS_PREFIX")
    os.environ["MISSIVE_REDIS_PREFIX"] = prefix
    _reset_caches()
    env = {
        **test_env,
        "MISSIVE_REDIS_PREFIX": prefix,
        "MISSIVE_MAIL_URL": f"smtp://127.0.0.1:{sink.port}?pool=2",
        "MISSIVE_SEND_LEASE_SECONDS": "4",
        "MISSIVE_SEND_RETRY_SECONDS": "1",
        "MISSIVE_SEND_REKICK_SECONDS": "2",
        "MISSIVE_SEND_WINDOW": "16",
        "MISSIVE_SEND_BATCH": "64",
    }
    w = Workers(env, tmp_path)
    yield w
    w.stop()
    os.environ["MISSIVE_REDIS_PREFIX"] = saved or test_env["MISSIVE_REDIS_PREFIX"]
    _reset_caches()


class Beat:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "beat", "--interval", "0.5"],
            env={**os.environ, **env}, cwd=ROOT, stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture
def beat(workers: Workers, tmp_path: Path) -> Iterator[Beat]:
    b = Beat(workers.env, tmp_path / "beat.log")
    yield b
    b.stop()


def send_report(client: Any, auth: dict[str, str], send_id: int) -> dict[str, Any]:
    r = client.get(f"/api/v1/sends/{send_id}", headers=auth)
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_done(client: Any, auth: dict[str, str], send_id: int, timeout: float = 60,
              workers: Workers | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = send_report(client, auth, send_id)
        if report["status"] in ("done", "paused", "cancelled"):
            return report
        time.sleep(0.2)
    raise AssertionError(f"send not done: {send_report(client, auth, send_id)}\n"
                         + (workers.log_text() if workers else ""))
