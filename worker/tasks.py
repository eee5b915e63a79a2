"""Tasks are a few lines: open a session, call one service function, with ids as arguments."""

from __future__ import annotations

from functools import lru_cache

from app.config import get_settings
from app.db import session_scope
from app.mail.transport import Transport, from_url
from app.signup import service as signup
from worker.celery_app import celery


@lru_cache
def transport() -> Transport:
    """One transport per worker process, so SMTP connections are reused across tasks."""
    return from_url(get_settings().mail_url)


@celery.task(name="missive.send_confirmations", autoretry_for=(Exception,),
             retry_backoff=True, retry_backoff_max=600, max_retries=8)
def send_confirmations(subscription_ids: list[int]) -> None:
    for sub_id in subscription_ids:
        # One transaction per mail: a crash mid-list does not resend the ones already out.
        with session_scope() as session:
            signup.deliver_confirmation(session, sub_id, transport())


@celery.task(name="missive.send_welcome", autoretry_for=(Exception,),
             retry_backoff=True, retry_backoff_max=600, max_retries=8)
def send_welcome(subscription_id: int) -> None:
    with session_scope() as session:
        signup.deliver_welcome(session, subscription_id, transport())
