"""Rate limits count the same in Redis and, when Redis is not configured, in the database."""

from __future__ import annotations

import pytest

from app import ratelimit
from app.config import get_settings


@pytest.mark.parametrize("backend", ["redis", "database"])
def test_limit_allows_up_to_the_limit_then_refuses(backend, monkeypatch):
    if backend == "database":
        monkeypatch.setattr(get_settings(), "redis_url", "")
    results = [ratelimit.hit(f"k-{backend}", limit=3, per_seconds=60) for _ in range(5)]
    assert results == [True, True, True, False, False]
    # Another key has its own count.
    assert ratelimit.hit(f"other-{backend}", limit=3, per_seconds=60)


def test_database_counters_expire(monkeypatch, db):
    from datetime import timedelta

    from sqlalchemy import select, update

    from app.db import utcnow
    from app.ratelimit import RateCounter

    monkeypatch.setattr(get_settings(), "redis_url", "")
    ratelimit.hit("old", limit=1, per_seconds=60)
    db.execute(update(RateCounter).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert ratelimit.purge_expired(db) == 1
    assert db.scalars(select(RateCounter)).all() == []
