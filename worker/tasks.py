"""Tasks are a few lines: open a session, call one service function, with ids as arguments.

They are wake-ups, not state: each is safe to run twice (late acks, redelivery), because the
database says what is left to do.
"""

from __future__ import annotations

from functools import lru_cache

from app.config import get_settings
from app.db import get_sessionmaker, session_scope
from app.editions import cadence
from app.mail.pipeline import PipelinedSmtpPool
from app.mail.transport import SmtpTransport, Transport, from_url
from app.sending import service as sending
from app.sending import test_sends
from app.sending.engine import BatchSender, Drainer, TransportBatcher
from app.signup import service as signup
from worker.celery_app import celery


@lru_cache
def transport() -> Transport:
    """One transport per worker process, so SMTP connections are reused across tasks."""
    return from_url(get_settings().mail_url)


@lru_cache
def batch_sender() -> BatchSender:
    """The bulk sender: pipelined SMTP over the configured pool size, or the Maildir."""
    mail = from_url(get_settings().mail_url)
    if isinstance(mail, SmtpTransport):
        return PipelinedSmtpPool(mail.config, connections=mail.config.pool)
    return TransportBatcher(mail)


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


@celery.task(name="missive.start_send")
def start_send(send_id: int) -> None:
    with session_scope() as session:
        sending.start(session, send_id)


@celery.task(name="missive.drain_send")
def drain_send(send_id: int) -> None:
    Drainer(send_id, sessions=get_sessionmaker(), sender=batch_sender()).run()


@celery.task(name="missive.send_test", autoretry_for=(Exception,), retry_backoff=True,
             max_retries=5)
def send_test(issue_id: int, addresses: list[str]) -> None:
    with session_scope() as session:
        test_sends.deliver(session, issue_id, addresses, transport())


@celery.task(name="missive.mail_edition_alert", autoretry_for=(Exception,), retry_backoff=True,
             max_retries=8)
def mail_edition_alert(alert_id: int) -> None:
    with session_scope() as session:
        cadence.mail_alert(session, alert_id, transport())
