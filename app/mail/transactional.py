"""Mails a reader waits for — confirmation, welcome, test copies — one address at a time.

Each address is its own transaction and its own fate, so one refusal never holds up the others:

- sent: committed (with whatever the deliver function recorded);
- refused for good (5xx about the address): handed to the bounce policy, never retried;
- refused for now (4xx, connection or database trouble): returned, to be retried alone, later;
- a configuration problem (a bad MISSIVE_MAIL_URL, a refused login or sender): one clear log
  line and nothing retried — retrying cannot fix it, and no reader is to blame.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from app.bounces.service import record_refusal
from app.config import ConfigError
from app.db import session_scope
from app.mail.transport import DeliveryError
from app.ops import metrics

log = logging.getLogger("missive.mail")
T = TypeVar("T")


def deliver_each(kind: str, items: Sequence[T], deliver: Callable[[Any, T], object]
                 ) -> list[T]:
    """Call `deliver(session, item)` for each item, each in its own transaction; the items to
    try again later (see the module docstring for what happens to the others)."""
    tally: Counter[str] = Counter()
    retry: list[T] = []
    for index, item in enumerate(items):
        try:
            with session_scope() as session:
                if deliver(session, item) is not False:
                    tally["sent"] += 1
        except DeliveryError as exc:
            if not exc.temporary and exc.recipients:
                _refused(kind, exc)
                tally["refused"] += 1
            elif not exc.temporary:
                log.error("cannot send %s mails: the mail server refused the session or the "
                          "sender (%s %s); check MISSIVE_MAIL_URL and MISSIVE_BOUNCE_ADDRESS. "
                          "Not retried.", kind, exc.code, exc.message)
                break
            elif exc.code == 0:
                # No server to talk to: the rest would only wait for the same timeout.
                log.warning("%s mails deferred: %s", kind, exc.message)
                retry.extend(items[index:])
                tally["deferred"] += len(items) - index
                break
            else:
                log.info("%s mail deferred by the server: %s %s", kind, exc.code, exc.message)
                retry.append(item)
                tally["deferred"] += 1
        except ConfigError as exc:
            log.error("cannot send %s mails: %s. Not retried.", kind, exc)
            break
        except Exception:
            log.exception("%s mail failed; it will be tried again", kind)
            retry.append(item)
            tally["deferred"] += 1
    metrics.record_transactional(kind, tally)
    log.info("%s mails: %s", kind, ", ".join(f"{n} {o}" for o, n in sorted(tally.items()))
             or "nothing to send")
    return retry


def _refused(kind: str, exc: DeliveryError) -> None:
    log.info("%s mail refused for good: %s %s", kind, exc.code, exc.message)
    with session_scope() as session:
        for address in exc.recipients:
            record_refusal(session, address, exc.code, exc.message)


def retry_delay(retries: int) -> int:
    """Seconds before the next round for deferred addresses: 10 s doubling, at most 10 min."""
    return int(min(600, 10 * 2 ** retries))
