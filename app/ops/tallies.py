"""Counts by status that stay exact and cheap at a million rows: subscriptions per newsletter,
deliveries per send.

Triggers on `subscriptions` and `deliveries` (migration 0013) write the change of every
statement into `status_tallies` in the same transaction, so a count read here is what
`SELECT count(*) ... GROUP BY status` would answer, whatever wrote the rows (the app, a
cascade, psql). `compact` keeps the rows few; until it runs, a count just sums more rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from sqlalchemy import delete, func, insert, select, tuple_
from sqlalchemy.orm import Session

from app.ops.models import StatusTally

Kind = Literal["subscriptions", "deliveries"]


def counts(session: Session, kind: Kind, owner_id: int) -> dict[str, int]:
    """Rows of `kind` belonging to `owner_id` (a newsletter, a send) by status; statuses with
    no row are left out."""
    rows = session.execute(
        select(StatusTally.status, func.sum(StatusTally.n))
        .where(StatusTally.kind == kind, StatusTally.owner_id == owner_id)
        .group_by(StatusTally.status))
    return {status: int(n) for status, n in rows if n}


def compact(session: Session) -> int:
    """Fold each key's rows into one (dropping keys that sum to zero); how many rows went.

    The rows are taken with DELETE ... RETURNING, so two compactions at once never fold the
    same row twice, and a change written meanwhile stays as its own row."""
    key = (StatusTally.kind, StatusTally.owner_id, StatusTally.status)
    busy = select(*key).group_by(*key).having(func.count() > 1)
    gone = session.execute(
        delete(StatusTally).where(tuple_(*key).in_(busy)).returning(*key, StatusTally.n)).all()
    sums: Counter[tuple[str, int, str]] = Counter()
    for kind, owner_id, status, n in gone:
        sums[(kind, owner_id, status)] += n
    rows = [{"kind": k, "owner_id": o, "status": s, "n": n} for (k, o, s), n in sums.items()
            if n]
    if rows:
        session.execute(insert(StatusTally), rows)
    return len(gone)
