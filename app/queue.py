"""The Celery app as the web side sees it: it only enqueues, by task name, after commit.

Jobs carry ids, never ORM objects, and they are only wake-ups: the database stays the truth. A
job recorded on a session is sent when that session commits and dropped when it rolls back, so
a sign-up whose transaction fails sends nothing.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.ops import logs

log = logging.getLogger(__name__)

_JOBS_KEY = "missive_jobs"
REQUEST_ID_HEADER = "missive_request_id"
BULK_QUEUE = "missive"
TRANSACTIONAL_QUEUE = "transactional"
# A newsroom CSV import goes there too: an editor watches its page, and on the bulk queue it
# would wait behind drain tasks that hold every slot for as long as a send lasts. It takes one
# of the transactional worker's threads; the others go on mailing.
TRANSACTIONAL_TASKS = ("missive.send_confirmations", "missive.send_welcome", "missive.send_test",
                       "missive.mail_edition_alert", "missive.import_subscribers")


def make_celery(settings: Settings) -> Celery:
    app = Celery("missive")
    conf: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "task_default_queue": BULK_QUEUE,
        # Mails a reader waits for go on a queue of their own, which `missive worker` serves
        # in a process of its own: a long send never holds up a confirmation.
        "task_routes": {name: {"queue": TRANSACTIONAL_QUEUE} for name in TRANSACTIONAL_TASKS},
    }
    if settings.broker_url.startswith("filesystem"):
        folder = settings.broker_folder
        for sub in ("queue", "processed"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        conf["broker_transport_options"] = {
            # The same folder in and out: producers and the worker meet there.
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
        }
    elif settings.broker_url.startswith("redis"):
        conf["broker_transport_options"] = {
            "global_keyprefix": f"{settings.redis_prefix}celery:",
            "visibility_timeout": 3600,
        }
    app.conf.update(conf)
    return app


@lru_cache
def get_celery() -> Celery:
    return make_celery(get_settings())


def enqueue_after_commit(session: Session, task_name: str, *args: Any) -> None:
    """Send the task `task_name(*args)` once `session` commits; forget it if it rolls back."""
    session.info.setdefault(_JOBS_KEY, []).append((task_name, args))


@event.listens_for(Session, "after_commit")
def _send_jobs(session: Session) -> None:
    jobs = session.info.pop(_JOBS_KEY, [])
    if jobs:
        celery = get_celery()
        # The request (or task) that enqueued the job: the worker's log lines name it too.
        request_id = logs.current().get("request_id")
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        for name, args in jobs:
            try:
                celery.send_task(name, args=list(args), headers=headers)
            except Exception:
                # The data is committed; `missive beat` sweeps what a lost wake-up left behind.
                log.exception("could not enqueue %s%r", name, args)


@event.listens_for(Session, "after_soft_rollback")
def _drop_jobs(session: Session, previous_transaction: Any) -> None:
    session.info.pop(_JOBS_KEY, None)
