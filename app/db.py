"""Database plumbing: the declarative base, the engine, and the session edges that commit.

Services and repositories receive a Session and never commit; the request dependency, a task's
`session_scope()` or a CLI command is the edge that commits or rolls back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Path
from sqlalchemy import JSON, DateTime, Engine, MetaData, Select, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.config import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# JSONB on PostgreSQL, JSON text elsewhere.
JSONDict = JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONDict}


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the web, worker and scheduler processes share the file; foreign keys are
            # off by default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    # Every mapped class must be known before the first query, whichever entry point runs.
    import app.models  # noqa: F401

    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def dialect_insert(bind: Session | Engine, table: Any) -> Any:
    """An INSERT that knows ON CONFLICT for the backend (PostgreSQL or SQLite)."""
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


RowT = TypeVar("RowT", bound=_HasId)


def newest_first_page(session: Session, stmt: Select[RowT], id_column: QueryableAttribute[int],
                      *, before_id: int | None, limit: int) -> tuple[list[RowT], int | None]:
    """One page of `stmt`'s rows newest first, keyset-paginated by id: at most `limit` rows
    below `before_id`, and the id to continue below (None on the last page).

    The page walks the id index from `before_id` down, so a deep page costs what the first
    one does (an OFFSET would read every row before it)."""
    stmt = stmt.order_by(id_column.desc()).limit(limit + 1)
    if before_id is not None:
        stmt = stmt.where(id_column < before_id)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work for tasks and commands: commit on success, roll back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


# scope="function": commit before the response is sent, so a failed commit is never a 2xx.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

# A path id that fits the integer primary keys (a larger number is a 422, not a database error).
DbId = Annotated[int, Path(ge=1, le=2**31 - 1)]
