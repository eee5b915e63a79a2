"""The Celery app the worker runs: `celery -A worker.celery_app worker` (or `missive worker`)."""

import contextlib
from typing import Any

from celery.signals import setup_logging, task_postrun, task_prerun, worker_process_init

from app.queue import REQUEST_ID_HEADER, get_celery

celery = get_celery()
celery.conf.update(include=["worker.tasks"])


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

    get_engine().dispose(close=False)


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
