"""Tasks are a few lines: open a session, call one service function, with ids as arguments.

They are wake-ups, not state: each is safe to run twice (late acks, redelivery), because the
database says what is left to do.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from celery import Task

from app.config import get_settings
from app.db import get_sessionmaker, session_scope
from app.editions import cadence
from app.mail import transactional
from app.mail.pipeline import PipelinedSmtpPool
from app.mail.transport import SmtpTransport, Transport, from_url
from app.ops import metrics
from app.sending import service as sending
from app.sending import test_sends
from app.sending.engine import BatchSender, Drainer, TransportBatcher
from app.signup import service as signup
from app.subscribers import imports
from worker.celery_app import celery

log = logging.getLogger("missive.worker")


@lru_cache
def transport() -> Transport:
    """One transport per worker process, so SMTP connections are reused across tasks."""
    return from_url(get_settings().mail_url)


@lru_cache
def batch_sender() -> BatchSender:
    """The bulk sender: pipelined SMTP over the configured pool size, or the Maildir."""
    mail = from_url(get_settings().mail_url)
    if isinstance(mail, SmtpTransport):
        return PipelinedSmtpPool(mail.config, connections=mail.config.pool,
                                 on_batch=metrics.record_batch)
    return metrics.CountedSender(TransportBatcher(mail))


@celery.task(name="missive.send_confirmations", bind=True, max_retries=8)
def send_confirmations(self: Task, subscription_ids: list[int]) -> None:
    # One transaction per mail: a crash mid-list does not resend the ones already out.
    retry = transactional.deliver_each(
        "confirmation", subscription_ids,
        lambda session, sub_id: signup.deliver_confirmation(session, sub_id, transport()))
    if retry:
        raise self.retry(args=[retry], countdown=transactional.retry_delay(self.request.retries))


@celery.task(name="missive.send_welcome", bind=True, max_retries=8)
def send_welcome(self: Task, subscription_id: int) -> None:
    retry = transactional.deliver_each(
        "welcome", [subscription_id],
        lambda session, sub_id: signup.deliver_welcome(session, sub_id, transport()))
    if retry:
        raise self.retry(countdown=transactional.retry_delay(self.request.retries))


@celery.task(name="missive.import_subscribers")
def import_subscribers(job_id: int) -> None:
    imports.run(job_id)


@celery.task(name="missive.start_send")
def start_send(send_id: int) -> None:
    with session_scope() as session:
        sending.start(session, send_id)


@celery.task(name="missive.drain_send")
def drain_send(send_id: int) -> dict[str, Any]:
    stats = Drainer(send_id, sessions=get_sessionmaker(), sender=batch_sender()).run()
    if stats.stopped_because == "worker stopping":
        # This worker is shutting down and handed its rows back: wake another one now rather
        # than when beat notices the send has gone quiet.
        celery.send_task("missive.drain_send", args=[send_id])
    return asdict(stats)


@celery.task(name="missive.send_test", bind=True, max_retries=5)
def send_test(self: Task, issue_id: int, addresses: list[str], marker: bool = True) -> None:
    retry = transactional.deliver_each(
        "test", addresses,
        lambda session, address: test_sends.deliver(session, issue_id, [address], transport(),
                                                    marker=marker))
    if retry:
        raise self.retry(args=[issue_id, retry, marker],
                         countdown=transactional.retry_delay(self.request.retries))


@celery.task(name="missive.mail_edition_alert", autoretry_for=(Exception,), retry_backoff=True,
             max_retries=8)
def mail_edition_alert(alert_id: int) -> None:
    with session_scope() as session:
        cadence.mail_alert(session, alert_id, transport())
