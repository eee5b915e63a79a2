from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

# 64-bit ids on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class MetricCounter(Base):
    """A running total for /metrics, kept here only when Redis is not configured."""

    __tablename__ = "metric_counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class StatusTally(Base):
    """Part of a count of rows by status: subscriptions per newsletter, deliveries per send.

    Database triggers (migration 0013) add a row for every change of those tables, in the
    same transaction, so the sum of a key's rows is always its exact count; `tallies.compact`
    folds each key's rows into one now and then. Reading a count is then a sum over a few rows
    instead of a scan of a million."""

    __tablename__ = "status_tallies"
    __table_args__ = (Index("ix_status_tallies_key", "kind", "owner_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # "subscriptions" (owner: a newsletter) or "deliveries" (owner: a send).
    kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    n: Mapped[int] = mapped_column(BigInteger)
