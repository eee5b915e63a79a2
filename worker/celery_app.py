"""The Celery app the worker runs: `celery -A worker.celery_app worker` (or `missive worker`)."""

from typing import Any

from celery.signals import worker_process_init

from app.queue import get_celery

celery = get_celery()
celery.conf.update(include=["worker.tasks"])


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool process must not share the parent's database connections.
    from app.db import get_engine

    get_engine().dispose(close=False)
