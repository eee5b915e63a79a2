"""Celery tasks. `worker` imports `app`; `app` only enqueues by task name."""
