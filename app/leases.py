"""Leases on the database's clock and fencing tokens, for any job that workers claim (the send
ledger's rows, newsroom imports): a worker's own clock may be paused, slow or jump, the
database's is one for all of them."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.db import UTCDateTime


class db_now(FunctionElement[datetime]):  # noqa: N801 - reads as SQL
    """The database's current time plus `seconds` (a number or a SQL expression).

    PostgreSQL takes the time the statement began; SQLite its `now` in the text format that
    SQLAlchemy stores its datetimes in, so that comparisons with stored values hold.
    """

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, seconds: float | ColumnElement[Any] = 0) -> None:
        super().__init__(seconds if isinstance(seconds, ColumnElement) else literal(seconds))


@compiles(db_now)
def _db_now_default(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(statement_timestamp() + ({seconds}) * interval '1 second')"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return (f"strftime('%Y-%m-%d %H:%M:%f000', 'now', "
            f"printf('%+.3f seconds', {seconds}))")


def new_token() -> int:
    """A fencing token for one claim: random, so no two claims share one (fits a BIGINT)."""
    return secrets.randbits(62) + 1
