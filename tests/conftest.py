"""Test harness: real PostgreSQL, Redis and an SMTP server, as production has them.

A fresh database `missive_test_<random>` is created for the run and dropped after it; Redis keys
carry a prefix of the run's own; the SMTP server (aiosmtpd) listens on a free port. If a server
is missing the run stops at once and says which, and how to start it.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

PG_HOST = os.environ.get("MISSIVE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MISSIVE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MISSIVE_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("MISSIVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent
RUN_ID = secrets.token_hex(4)
DB_NAME = f"missive_test_{RUN_ID}"
PREFIX = f"missive-test-{RUN_ID}:"

PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def _admin_conn() -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True,
        connect_timeout=5,
    )


def _check_servers() -> None:
    try:
        _admin_conn().close()
    except psycopg.OperationalError as exc:
        pytest.exit(
            f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as {PG_USER} ({exc}).\n"
            f"Start it with: {PG_START}", returncode=3,
        )
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.exit(
            f"Redis is not reachable at {REDIS_URL} ({exc}).\nStart it with: {REDIS_START}",
            returncode=3,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- SMTP -------------------------------------------------------------------------------------


class Inbox:
    """What the test SMTP server received, with a way to wait for it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        # The bytes as received (for checks a re-serialisation would spoil, such as DKIM).
        self.raw: list[bytes] = []
        self.arrived: list[float] = []  # time.time() of each message
        self.lock = threading.Condition()
        # Per-recipient scripted replies, e.g. {"x@example.org": "550 5.1.1 no such user"}.
        self.reject: dict[str, str] = {}

    def add(self, mail_from: str, rcpts: list[str], data: bytes) -> None:
        msg = message_from_bytes(data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append((mail_from, rcpts, msg))
            self.raw.append(data)
            self.arrived.append(time.time())
            self.lock.notify_all()

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.raw.clear()
            self.arrived.clear()
            self.reject.clear()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} messages, got {len(self.messages)} in {timeout}s"
                    )
                self.lock.wait(left)
            return [m for _, _, m in self.messages]

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for _, rcpts, m in self.messages if address in rcpts]


class SmtpHandler:
    """Records each message in an Inbox; refuses recipients listed in `inbox.reject`."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:
        reply = self.inbox.reject.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.inbox.add(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        return "250 Message accepted"


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(SmtpHandler(inbox), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


# --- the environment every part of Missive reads ----------------------------------------------


@pytest.fixture(scope="session")
def test_env(tmp_path_factory: pytest.TempPathFactory,
             smtp_server: tuple[int, Inbox]) -> Iterator[dict[str, str]]:
    _check_servers()
    with _admin_conn() as conn:
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    port, _ = smtp_server
    env = {
        "MISSIVE_DATABASE_URL": f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{DB_NAME}",
        "MISSIVE_SECRET_KEY": secrets.token_urlsafe(32),
        "MISSIVE_REDIS_URL": REDIS_URL,
        "MISSIVE_REDIS_PREFIX": PREFIX,
        "MISSIVE_BROKER_URL": REDIS_URL,
        "MISSIVE_MAIL_URL": f"smtp://127.0.0.1:{port}?pool=2",
        "MISSIVE_BASE_URL": "https://news.example.org",
        "MISSIVE_VAR_DIR": str(tmp_path_factory.mktemp("var")),
        "MISSIVE_BOUNCE_ADDRESS": "bounces@news.example.org",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _reset_caches()
    from app.cli import _upgrade

    _upgrade()
    yield env
    from app.db import get_engine

    get_engine().dispose()
    with _admin_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{PREFIX}*", count=1000):
        client.delete(key)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _reset_caches()


def _reset_caches() -> None:
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker
    from app.queue import get_celery

    for cached in (get_settings, get_engine, get_sessionmaker, get_celery):
        cached.cache_clear()


# Children before parents, so plain DELETEs never trip a foreign key.
TABLES = ("import_job_parts", "import_jobs", "feed_item_uses", "edition_alerts", "bounces",
          "messages", "deliveries", "sends",
          "consent_events", "subscriptions", "suppressions", "subscribers", "api_tokens",
          "user_sessions", "user_newsletters", "users", "issues", "newsletters", "rate_counters",
          # Last: deleting the rows above writes their tallies.
          "status_tallies")


@pytest.fixture(autouse=True)
def clean_state(test_env: dict[str, str], smtp_server: tuple[int, Inbox]) -> Iterator[None]:
    """Every test starts from empty tables, an empty inbox and no rate-limit counts."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from app.db import get_engine

    # DELETE rather than TRUNCATE: the shared worker may still hold row locks from the last
    # test, and TRUNCATE's table locks can deadlock with it.
    for attempt in range(5):
        try:
            with get_engine().begin() as conn:
                for table in TABLES:
                    conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (fixed names)
            break
        except OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.5)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{PREFIX}rl:*", count=1000):
        client.delete(key)
    smtp_server[1].clear()
    yield


@pytest.fixture
def inbox(smtp_server: tuple[int, Inbox]) -> Inbox:
    return smtp_server[1]


@pytest.fixture
def db() -> Iterator[Any]:
    """A session for arranging and checking data; committed at the end of the test."""
    from app.db import session_scope

    with session_scope() as session:
        yield session


@pytest.fixture
def client(test_env: dict[str, str]) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(), base_url="https://news.example.org") as c:
        yield c


@pytest.fixture
def newsletter(test_env: dict[str, str]) -> Any:
    from app import demo
    from app.db import session_scope

    with session_scope() as session:
        n = demo.load(session)
    return n


@pytest.fixture
def token(test_env: dict[str, str]) -> str:
    from app.auth import service as auth
    from app.db import session_scope

    with session_scope() as session:
        return auth.create_token(session, name="tests", role="admin")


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- worker processes -------------------------------------------------------------------------


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--concurrency", "1"],
            env={**os.environ, **env}, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        # `missive worker` runs two Celery workers (bulk, transactional): both say "ready.".
        while log.read_bytes().count(b" ready.") < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def worker(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[WorkerProcess]:
    """A real `missive worker` process on the Redis broker, shared by the tests that need it."""
    w = WorkerProcess(test_env, tmp_path_factory.mktemp("worker") / "worker.log")
    yield w
    w.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
               ) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
