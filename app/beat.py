"""`missive beat`: the scheduler. Starts scheduled sends, re-kicks stalled ones, tidies up.

Schedules live in the database (a send's `scheduled_at`), not in long-ETA Celery tasks, which
Redis would redeliver after its visibility timeout. Running two beats is harmless: each job
locks what it takes.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from app import ratelimit
from app.db import session_scope

log = logging.getLogger("missive.beat")


def tick() -> None:
    """One round of periodic work; each job in its own transaction."""
    from app.sending import service as sending

    with session_scope() as session:
        started = sending.start_due(session)
    if started:
        log.info("started scheduled sends %s", started)
    with session_scope() as session:
        kicked = sending.rekick_stalled(session)
    if kicked:
        log.info("re-kicked stalled sends %s", kicked)
    from app.subscribers import imports

    with session_scope() as session:
        requeued = imports.sweep(session)
    if requeued:
        log.info("re-queued imports no worker is running %s", requeued)
    from app.bounces import mailbox

    polled = mailbox.poll_configured()
    if polled and (polled.processed or polled.set_aside):
        log.info("bounce mailbox: %d processed, %d set aside", polled.processed,
                 polled.set_aside)
    from app.editions import cadence

    for line in cadence.draft_due():
        log.info("feed draft: %s", line)
    from app.ops import tallies

    with session_scope() as session:
        folded = tallies.compact(session)
    if folded:
        log.debug("folded %d status tally rows", folded)
    with session_scope() as session:
        purged = ratelimit.purge_expired(session)
    if purged:
        log.info("purged %d expired rate-limit counters", purged)


def run_forever(*, interval: float) -> None:
    from app.config import get_settings
    from app.ops import logs

    logs.configure("beat", get_settings().log_format)
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("beat started, every %.1fs", interval)
    while not stop.is_set():
        try:
            tick()
        except Exception:
            log.exception("beat tick failed; trying again next round")
        stop.wait(interval)
