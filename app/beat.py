"""`missive beat`: the one scheduler process. Housekeeping for now; scheduled sends join it."""

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
    with session_scope() as session:
        purged = ratelimit.purge_expired(session)
    if purged:
        log.info("purged %d expired rate-limit counters", purged)


def run_forever(*, interval: float) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s beat %(levelname)s %(message)s")
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
