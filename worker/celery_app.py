"""The Celery app the worker runs: `celery -A worker.celery_app worker` (or `missive worker`)."""

import contextlib
import os
import signal
from typing import Any

import billiard.process  # type: ignore[import-untyped]
from celery.signals import worker_process_init, worker_shutting_down

from app.queue import get_celery
from app.sending.engine import request_stop

celery = get_celery()
celery.conf.update(include=["worker.tasks"])


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool process must not share the parent's database connections.
    from app.db import get_engine

    get_engine().dispose(close=False)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(_STOP_DRAINS, _on_stop_drains)


# What the main process sends its pool processes when it begins a warm shutdown. Not SIGTERM:
# that would also end tasks other than drains, which a warm shutdown lets finish.
_STOP_DRAINS = signal.SIGUSR2


def _on_sigterm(signum: int, frame: Any) -> None:
    """In a pool process: a drain finishes its window, records it, hands back the rest of its
    claim and returns; a process with no drain running stops at once, as before."""
    if not request_stop():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _on_stop_drains(signum: int, frame: Any) -> None:
    request_stop()


@worker_shutting_down.connect
def _stop_drains(**_: Any) -> None:
    # A warm shutdown waits for running tasks, and a drain can run as long as its send: tell
    # the drains to stop after their window (in this process for the solo pool, and in the
    # pool processes, which the signal to this one does not reach).
    request_stop()
    for child in billiard.process.active_children():
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, _STOP_DRAINS)
