"""Liveness and readiness: `/healthz` says the process answers; `/readyz` that what it needs
(the database, the Celery broker, Redis) answers too.

The checks run in worker threads with short timeouts, all at once, so a dead dependency costs
`/readyz` a couple of seconds at most and never blocks the event loop.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache
from typing import Any

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from app.config import Settings, get_settings

log = logging.getLogger("missive.ops")

TIMEOUT = 2.0  # seconds, per check
router = APIRouter(include_in_schema=False)


@lru_cache
def _probe_engine(url: str) -> Engine:
    # Its own engine: no pool to wait on, and a connect timeout the request path does not want.
    if url.startswith("sqlite"):
        return create_engine(url, poolclass=NullPool, connect_args={"timeout": TIMEOUT})
    return create_engine(url, poolclass=NullPool,
                         connect_args={"connect_timeout": max(1, int(TIMEOUT))})


@lru_cache
def _redis(url: str) -> redis.Redis[bytes]:
    return redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)


def check_database(settings: Settings) -> None:
    with _probe_engine(settings.database_url).connect() as conn:
        conn.execute(text("SELECT 1"))


def check_broker(settings: Settings) -> None:
    url = settings.broker_url
    if url.startswith("filesystem"):
        from app.queue import get_celery

        get_celery()  # makes the folders, as the first enqueue would
        folder = settings.broker_folder / "queue"
        if not os.access(folder, os.W_OK):
            raise OSError(f"broker folder {folder} is not writable")
    elif url.startswith(("redis://", "rediss://")):
        _redis(url).ping()
    else:
        from app.queue import get_celery

        with get_celery().connection_for_write(connect_timeout=TIMEOUT) as conn:
            conn.ensure_connection(max_retries=1, timeout=TIMEOUT)


def check_redis(settings: Settings) -> None:
    _redis(settings.redis_url).ping()


def readiness(settings: Settings) -> dict[str, str]:
    """Each dependency's state: "ok", "unreachable", or "not configured" (Redis is optional)."""
    checks: dict[str, Callable[[Settings], None]] = {
        "database": check_database, "broker": check_broker}
    states = {"redis": "not configured"}
    if settings.redis_url:
        checks["redis"] = check_redis
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    deadline = time.monotonic() + TIMEOUT + 1
    try:
        futures = {name: pool.submit(check, settings) for name, check in checks.items()}
        for name, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                states[name] = "ok"
            except FutureTimeout:
                states[name] = "unreachable"
                log.warning("readiness: %s did not answer within %.0fs", name, TIMEOUT + 1)
            except Exception as exc:
                states[name] = "unreachable"
                # The details (host, port) go to the log, not to whoever asks /readyz.
                log.warning("readiness: %s unreachable: %s", name,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    finally:
        # A check stuck past its timeout is left to finish on its own.
        pool.shutdown(wait=False, cancel_futures=True)
    return states


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive and answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz() -> JSONResponse:
    """200 when the database, the broker and Redis answer; 503 naming those that do not."""
    states = readiness(get_settings())
    failing = sorted(name for name, state in states.items() if state == "unreachable")
    body: dict[str, Any] = {"status": "ready" if not failing else "unavailable",
                            "checks": states}
    if failing:
        body["failing"] = failing
        body["detail"] = f"not reachable: {', '.join(failing)}"
    return JSONResponse(body, status_code=503 if failing else 200)
