"""`/metrics` in the Prometheus text format, and the few calls that feed it.

Totals that workers produce (deliveries by outcome, SMTP reply times, transactional mails) are
added per batch to `counters`; the rest (sends, rows pending, bounces, queue lengths) is read
from the database and the broker when Prometheus scrapes, by a custom collector. Nothing is
counted per message: a batch of outcomes costs one Redis round trip.
"""

from __future__ import annotations

import bisect
import hmac
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import get_engine
from app.errors import AppError
from app.ops import counters
from app.queue import BULK_QUEUE, TRANSACTIONAL_QUEUE

log = logging.getLogger("missive.ops")

OUTCOMES = ("sent", "deferred", "refused", "unknown")
BOUNCE_KINDS = ("hard", "soft", "policy", "complaint")
# Seconds from the end of a message to the server's reply: a relay answers in milliseconds;
# seconds mean content scanning or a struggling server.
REPLY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport keeps priority sub-queues under this


class _Result(Protocol):
    @property
    def code(self) -> int: ...

    @property
    def sent(self) -> bool: ...

    @property
    def unknown(self) -> bool: ...

    @property
    def temporary(self) -> bool: ...


def outcome_of(result: _Result) -> str:
    """sent, deferred (4xx or connection trouble), refused (5xx) or unknown."""
    if result.sent:
        return "sent"
    if result.unknown:
        return "unknown"
    return "deferred" if result.temporary else "refused"


def record_batch(outcomes: Iterable[_Result], reply_seconds: Sequence[float] = ()) -> None:
    """Count one batch of bulk deliveries and the SMTP reply times measured for it."""
    totals: Counter[str] = Counter(f"deliveries:{outcome_of(o)}" for o in outcomes)
    if reply_seconds:
        for seconds in reply_seconds:
            index = bisect.bisect_left(REPLY_BUCKETS, seconds)
            bound = REPLY_BUCKETS[index] if index < len(REPLY_BUCKETS) else "+Inf"
            totals[f"smtp_reply_le:{bound}"] += 1
        totals["smtp_reply_count"] += len(reply_seconds)
        totals["smtp_reply_sum_us"] += int(sum(reply_seconds) * 1_000_000)
    counters.add(totals)


class _BatchSender(Protocol):
    def send_many(self, batch: Sequence[Any]) -> list[Any]: ...

    def close(self) -> None: ...


class CountedSender:
    """A bulk sender (the Maildir one) whose batches are counted like the SMTP pool's."""

    def __init__(self, inner: _BatchSender) -> None:
        self.inner = inner

    def send_many(self, batch: Sequence[Any]) -> list[Any]:
        outcomes = self.inner.send_many(batch)
        record_batch(outcomes)
        return outcomes

    def close(self) -> None:
        self.inner.close()


def record_transactional(kind: str, outcomes: Counter[str]) -> None:
    """Count confirmation, welcome and test mails by outcome (sent, deferred, refused)."""
    counters.add({f"transactional:{kind}:{o}": n for o, n in outcomes.items()})


# --- the collector ---------------------------------------------------------------------------


class MissiveCollector(Collector):
    """Reads the totals, the database and the broker at scrape time."""

    def collect(self) -> Iterator[Metric]:
        for part in (self._totals, self._database, self._queues):
            try:
                yield from part()
            except Exception:
                # One unreachable source must not hide the others' figures.
                log.warning("metrics: %s failed", part.__name__, exc_info=True)

    def _totals(self) -> Iterator[Metric]:
        totals = counters.read()
        deliveries = CounterMetricFamily(
            "missive_deliveries", "Bulk deliveries handed to the mail server, by outcome",
            labels=["outcome"])
        for outcome in OUTCOMES:
            deliveries.add_metric([outcome], totals.get(f"deliveries:{outcome}", 0))
        yield deliveries
        cumulative, buckets = 0, []
        for bound in REPLY_BUCKETS:
            cumulative += totals.get(f"smtp_reply_le:{bound}", 0)
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", totals.get("smtp_reply_count", 0)))
        yield HistogramMetricFamily(
            "missive_smtp_reply_seconds",
            "Time from the end of a message to the mail server's reply",
            buckets=buckets, sum_value=totals.get("smtp_reply_sum_us", 0) / 1_000_000)
        mails = CounterMetricFamily(
            "missive_transactional_mails", "Confirmation, welcome and test mails, by outcome",
            labels=["kind", "outcome"])
        for name, value in sorted(totals.items()):
            if name.startswith("transactional:"):
                _, kind, outcome = name.split(":", 2)
                mails.add_metric([kind, outcome], value)
        yield mails
        yield CounterMetricFamily("missive_signups", "Sign-ups that were sent a confirmation link",
                                  value=totals.get("signups", 0))

    def _database(self) -> Iterator[Metric]:
        from app.bounces.models import BounceRecord
        from app.sending.models import Delivery, Send

        with Session(get_engine()) as session:
            sends = _counts(session.execute(
                select(Send.status, func.count()).group_by(Send.status)))
            active = select(Send.id).where(Send.status.in_(("running", "paused")))
            rows = _counts(session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.send_id.in_(active),
                       Delivery.status.in_(("pending", "claimed", "unknown")))
                .group_by(Delivery.status)))
            bounces = _counts(session.execute(
                select(BounceRecord.kind, func.count()).group_by(BounceRecord.kind)))
        yield GaugeMetricFamily("missive_sends_running", "Sends being drained now",
                                value=sends.get("running", 0))
        by_status = GaugeMetricFamily("missive_sends", "Sends by status", labels=["status"])
        for status in ("scheduled", "running", "paused", "cancelled", "done"):
            by_status.add_metric([status], sends.get(status, 0))
        yield by_status
        pending = GaugeMetricFamily(
            "missive_send_rows", "Ledger rows of running and paused sends not yet settled: "
            "pending, claimed (in flight) and unknown (for an editor to resolve)",
            labels=["state"])
        for state in ("pending", "claimed", "unknown"):
            pending.add_metric([state], rows.get(state, 0))
        yield pending
        events = CounterMetricFamily("missive_bounce_events", "Bounce and complaint events "
                                     "recorded, by kind", labels=["kind"])
        for kind in BOUNCE_KINDS:
            events.add_metric([kind], bounces.get(kind, 0))
        yield events

    def _queues(self) -> Iterator[Metric]:
        lengths = GaugeMetricFamily("missive_queue_length", "Tasks waiting in each Celery queue",
                                    labels=["queue"])
        for queue in (TRANSACTIONAL_QUEUE, BULK_QUEUE):
            lengths.add_metric([queue], queue_length(queue))
        yield lengths


def _counts(rows: Iterable[Any]) -> dict[str, int]:
    return {str(name): int(count) for name, count in rows}


def queue_length(queue: str) -> int:
    """Tasks waiting in a Celery queue on the Redis or filesystem broker (0 for others)."""
    settings = get_settings()
    url = settings.broker_url
    if url.startswith(("redis://", "rediss://")):
        from app.ratelimit import redis_client

        name = f"{settings.redis_prefix}celery:{queue}"
        pipe = redis_client(url).pipeline(transaction=False)
        for key in (name, *(f"{name}{_PRIORITY_SEP}{p}" for p in (3, 6, 9))):
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())
    if url.startswith("filesystem"):
        folder = settings.broker_folder / "queue"
        return sum(1 for _ in folder.glob(f"*.{queue}.msg"))
    return 0


@lru_cache
def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MissiveCollector())
    return reg


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus text format. With MISSIVE_METRICS_TOKEN set, only for `Bearer <token>`."""
    wanted = get_settings().metrics_token
    if wanted:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {wanted}".encode()):
            raise AppError("metrics need the bearer token in MISSIVE_METRICS_TOKEN", 401)
    return Response(generate_latest(registry()), media_type=CONTENT_TYPE_LATEST)
