"""The Celery app the worker runs: `celery -A worker.celery_app worker` (or `missive worker`)."""

import contextlib
import os
import signal
from types import FrameType
from typing import Any

import billiard.process  # type: ignore[import-untyped]
from celery.signals import task_prerun, worker_process_init, worker_shutting_down

from app.queue import get_celery
from app.sending.engine import request_stop

celery = get_celery()
celery.conf.update(include=["worker.tasks"])

# What the main process sends its pool processes when a warm shutdown begins. Not SIGTERM: in a
# pool process that ends any task at once, and a warm shutdown lets tasks other than drains end.
_STOP_DRAINS = signal.SIGUSR2
_pool_process = False
_previous_sigterm: Any = signal.SIG_DFL


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool process must not share the parent's database connections.
    from app.db import get_engine

    global _pool_process
    get_engine().dispose(close=False)
    _pool_process = True


@task_prerun.connect
def _graceful_drains(**_: Any) -> None:
    # billiard sets its own SIGTERM handler in a pool process after `worker_process_init`, so
    # ours goes in front of it here, once, in the process's main thread.
    global _previous_sigterm
    if _pool_process and signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(_STOP_DRAINS, _on_stop_drains)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """In a pool process: a drain finishes its window, records it, hands back the rest of its
    claim and returns; a process with no drain running stops at once, as before."""
    if request_stop():
        return
    if callable(_previous_sigterm):
        _previous_sigterm(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_stop_drains(signum: int, frame: FrameType | None) -> None:
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
