"""The Celery app the worker runs: `celery -A worker.celery_app worker` (or `missive worker`)."""

import contextlib
import os
import signal
from types import FrameType
from typing import Any

import billiard.process  # type: ignore[import-untyped]
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_shutting_down,
)

from app.queue import REQUEST_ID_HEADER, get_celery
from app.sending.engine import request_stop

celery = get_celery()
celery.conf.update(include=["worker.tasks"])

# What the main process sends its pool processes when a warm shutdown begins. Not SIGTERM: in a
# pool process that ends any task at once, and a warm shutdown lets tasks other than drains end.
_STOP_DRAINS = signal.SIGUSR2
_pool_process = False
_previous_sigterm: Any = signal.SIG_DFL


def _configure_logging() -> None:
    from app.config import get_settings
    from app.ops import logs

    logs.configure("worker", get_settings().log_format)


# At import too, before Celery's own start-up warnings (e.g. running as root), so that those
# come out in the same format.
_configure_logging()


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


@setup_logging.connect
def _logging(**_: Any) -> None:
    # Connected, so Celery leaves logging to us: the same lines as the web and beat.
    _configure_logging()


# Tasks whose first argument is a send id: their log lines say which send.
_SEND_TASKS = {"missive.drain_send", "missive.start_send"}


@task_prerun.connect
def _bind_task(task_id: str = "", task: Any = None, args: Any = (), **_: Any) -> None:
    from app.ops import logs

    fields: dict[str, Any] = {"task": getattr(task, "name", "?"), "task_id": task_id}
    if fields["task"] in _SEND_TASKS and args:
        fields["send_id"] = args[0]
    request = getattr(task, "request", None)
    request_id = getattr(request, REQUEST_ID_HEADER, None) or (
        getattr(request, "headers", None) or {}).get(REQUEST_ID_HEADER)
    if request_id:
        fields["request_id"] = request_id
    _tokens[task_id] = logs.bind(**fields)


@task_postrun.connect
def _unbind_task(task_id: str = "", **_: Any) -> None:
    from app.ops import logs

    token = _tokens.pop(task_id, None)
    if token is not None:
        with contextlib.suppress(ValueError):  # bound in another context: nothing to undo
            logs.unbind(token)


_tokens: dict[str, Any] = {}
