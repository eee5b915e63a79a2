"""Running totals that /metrics reports, added to by any process (web, worker, beat).

Workers run in other processes and on other machines, so totals live where they all meet: a
Redis hash when MISSIVE_REDIS_URL is set (one round trip per call), else a database table.
Callers add per batch, never per message. Counting must never break what it counts: a failure
to count is logged and forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import dialect_insert, get_engine
from app.ops.models import MetricCounter
from app.ratelimit import redis_client

log = logging.getLogger("missive.ops")


def _key() -> str:
    return f"{get_settings().redis_prefix}metrics"


def add(values: Mapping[str, int], *, session: Session | None = None) -> None:
    """Add to the named totals. With the database fallback, `session` (when given) carries the
    write, so it commits or rolls back with the work it counts."""
    values = {k: v for k, v in values.items() if v}
    if not values:
        return
    settings = get_settings()
    try:
        if settings.redis_url:
            pipe = redis_client(settings.redis_url).pipeline(transaction=False)
            key = _key()
            for name, amount in values.items():
                pipe.hincrby(key, name, amount)
            pipe.execute()
            return
        rows = [{"name": name, "value": amount} for name, amount in sorted(values.items())]
        stmt = dialect_insert(get_engine(), MetricCounter).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"], set_={"value": MetricCounter.value + stmt.excluded.value})
        if session is not None:
            session.execute(stmt)
        else:
            with get_engine().begin() as conn:
                conn.execute(stmt)
    except Exception:
        log.warning("could not count %s", ", ".join(values), exc_info=True)


def read() -> dict[str, int]:
    """Every total by name."""
    settings = get_settings()
    if settings.redis_url:
        raw = redis_client(settings.redis_url).hgetall(_key())
        return {k.decode(): int(v) for k, v in raw.items()}
    with get_engine().connect() as conn:
        return {name: int(value) for name, value in conn.execute(
            select(MetricCounter.name, MetricCounter.value))}
