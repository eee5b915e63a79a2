"""Fixed-window rate limits: in Redis when MISSIVE_REDIS_URL is set, else in the database."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from functools import lru_cache

import redis
from sqlalchemy import String, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.config import get_settings
from app.db import Base, dialect_insert, get_engine, utcnow


class RateCounter(Base):
    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime]


@lru_cache
@lru_cache(maxsize=8)
def redis_client(url: str) -> redis.Redis[bytes]:
    """One client (and connection pool) per URL for the process: a new client per call opened
    a connection each time, 1.6 ms a call against 0.15 ms on one kept open. The pool is
    thread-safe and starts afresh in a forked child."""
    return redis.Redis.from_url(url)


def hit(key: str, *, limit: int, per_seconds: int) -> bool:
    """Count one hit on `key`; True while the count in this window is within `limit`.

    Keys are hashed so that no address sits in Redis or the table in clear. The database
    fallback counts in its own transaction, so a refused request that rolls back still counts.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    window = int(time.time()) // per_seconds
    settings = get_settings()
    if settings.redis_url:
        client = redis_client(settings.redis_url)
        rkey = f"{settings.redis_prefix}rl:{digest}:{window}"
        pipe = client.pipeline()
        pipe.incr(rkey)
        pipe.expire(rkey, per_seconds + 1)
        count = int(pipe.execute()[0])
        return count <= limit
    expires = datetime.fromtimestamp((window + 1) * per_seconds, tz=utcnow().tzinfo)
    engine = get_engine()
    stmt = dialect_insert(engine, RateCounter).values(
        key=digest, window=window, count=1, expires_at=expires
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["key", "window"], set_={"count": RateCounter.count + 1}
    ).returning(RateCounter.count)
    with engine.begin() as conn:
        count = conn.execute(stmt).scalar_one()
    return int(count) <= limit


def purge_expired(session: Session) -> int:
    """Drop database counters whose window has passed (run by `missive beat`)."""
    result = session.execute(delete(RateCounter).where(RateCounter.expires_at < utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)
