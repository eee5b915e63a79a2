"""The Celery app the worker runs: `celery -A worker.celery_app worker` (or `missive worker`)."""

from app.queue import get_celery

celery = get_celery()
celery.conf.update(include=["worker.tasks"])
