"""CSV in and out, streamed: rows are read and written in batches, never all held at once."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from app.db import dialect_insert, utcnow
from app.errors import AppError, Invalid
from app.newsletters.models import Newsletter
from app.queue import enqueue_after_commit
from app.subscribers import repository as repo
from app.subscribers.models import ConsentEvent, Subscriber, Subscription, Suppression
from app.validation import (
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTES,
    MAX_NAME,
    clean_attributes,
    clean_text,
    email_key,
    normalise_email,
)

BATCH = 1000
MAX_REPORTED_ERRORS = 1000
# Spreadsheets run a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    kept_unsubscribed: int = 0
    error_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Lines of the file read so far (at a checkpoint: up to the end of the last batch).
    lines: int = 0

    def error(self, line: int, detail: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "kept_unsubscribed": self.kept_unsubscribed,
            "error_count": self.error_count,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class Position:
    """Where an import stood after a batch: the bytes and the lines of the file read by then.

    Always the end of a row, so an import given it goes on with the next row, numbering the
    lines as the first run did."""

    offset: int
    line: int


@dataclass
class _Row:
    line: int
    email: str
    key: str
    name: str | None
    attributes: dict[str, Any]


# Columns an export writes that describe a subscriber rather than come from the editor: an
# exported file re-imports as it is, and they do not turn into attributes.
EXPORT_ONLY = ("status", "suppressed", "created_at")
# Bytes that are not UTF-8 survive decoding as these (surrogateescape) until a row reports them.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
NOT_UTF8 = "not UTF-8 text: save the file as UTF-8 (CSV UTF-8 in a spreadsheet)"


def _restore(cell: str) -> str:
    """Undo `neutralise`, so that an exported cell comes back as it was."""
    if cell[:1] == "'" and cell[1:2] and cell[1] in FORMULA_START:
        return cell[1:]
    return cell


def _parse(line: int, cells: dict[str, str]) -> _Row:
    email = normalise_email(cells.get("email") or "")
    raw_name = cells.get("name")
    name = clean_text(raw_name, field="name", max_length=MAX_NAME) if raw_name else None
    attrs = clean_attributes(
        {k: v for k, v in cells.items() if k not in ("email", "name", *EXPORT_ONLY) and v != ""}
    )
    return _Row(line=line, email=email, key=email_key(email), name=name, attributes=attrs)


def _lines(stream: IO[bytes]) -> Iterator[str]:
    """The file's lines, split at LF only, as an editor and `wc -l` count them.

    A CR inside a quoted cell stays part of that cell rather than starting a line, so that the
    line numbers in the report are the ones the editor sees. One `readline` at a time: the file
    is never read whole.
    """
    first = True
    while raw := stream.readline():
        text = raw.decode("utf-8", errors="surrogateescape")
        if first:
            text, first = text.removeprefix("\ufeff"), False
        yield text


def _read_header(reader: Iterator[list[str]]) -> list[str]:
    try:
        header = next(reader)
    except StopIteration as exc:
        raise Invalid("the CSV is empty: it needs a header line with an 'email' column") from exc
    except csv.Error as exc:
        raise Invalid(f"line 1: not valid CSV: {exc}") from exc
    if any(_NOT_UTF8.search(h) for h in header):
        raise Invalid(f"line 1: {NOT_UTF8}")
    names = []
    for cell in header:
        cell = _restore(cell).strip()
        known = cell.lower() in ("email", "name", *EXPORT_ONLY)
        names.append(cell.lower() if known else cell)
    if "email" not in names:
        raise Invalid("the CSV header must have an 'email' column")
    if len(set(names)) != len(names):
        raise Invalid("the CSV header names a column twice")
    if any(not n for n in names):
        raise Invalid("the CSV header has an empty column name")
    # Checked once here rather than failing every row the same way.
    attributes = [n for n in names if n not in ("email", "name", *EXPORT_ONLY)]
    if len(attributes) > MAX_ATTRIBUTES:
        raise Invalid(f"at most {MAX_ATTRIBUTES} attribute columns (the header has "
                      f"{len(attributes)})")
    for n in attributes:
        clean_text(n, field=f"the CSV header: column name {n[:40]!r}",
                   max_length=MAX_ATTRIBUTE_KEY)
    return names


def _skip_to(stream: IO[bytes], offset: int) -> None:
    """Read on, a part at a time, to `offset` bytes into the file."""
    while (left := offset - stream.tell()) > 0:
        if not stream.read(min(left, 1024 * 1024)):
            raise Invalid("the file is shorter than the point its import had reached")


def _batches(stream: IO[bytes], report: ImportReport,
             resume: Position | None = None) -> Iterator[list[_Row]]:
    reader = csv.reader(_lines(stream), strict=True)
    header = _read_header(reader)
    skipped = 0  # lines passed over to resume, which the reader did not count
    if resume is not None:
        _skip_to(stream, resume.offset)
        skipped = max(resume.line - reader.line_num, 0)
    batch: dict[str, _Row] = {}
    while True:
        # Where this row starts; a quoted cell may carry it over several lines.
        line = reader.line_num + skipped + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.error(line, f"not valid CSV: {exc}")
            continue
        if not any(c.strip() for c in cells):
            continue
        if any(_NOT_UTF8.search(c) for c in cells):
            report.error(line, NOT_UTF8)
            continue
        if len(cells) > len(header):
            report.error(line, f"{len(cells)} cells but the header has {len(header)} columns")
            continue
        try:
            row = _parse(line, {h: _restore(c) for h, c in zip(header, cells, strict=False)})
        except AppError as exc:
            report.error(line, str(exc.detail))
            continue
        earlier = batch.get(row.key)
        if earlier is not None:
            # The same address twice in a batch: one subscriber, the later cells winning, as
            # they would over an address stored by an earlier batch.
            report.updated += 1
            row = _Row(line=row.line, email=earlier.email, key=row.key,
                       name=row.name if row.name is not None else earlier.name,
                       attributes={**earlier.attributes, **row.attributes})
        batch[row.key] = row
        if len(batch) >= BATCH:
            report.lines = reader.line_num + skipped
            yield list(batch.values())
            batch = {}
    report.lines = reader.line_num + skipped
    if batch:
        yield list(batch.values())


def import_csv(
    session: Session,
    stream: IO[bytes],
    *,
    newsletter: Newsletter,
    status: str = "active",
    source: str = "csv-import",
    checkpoint: Callable[[], None] | None = None,
    progress: Callable[[int], None] | None = None,
    report: ImportReport | None = None,
    resume: Position | None = None,
) -> ImportReport:
    """Import subscribers from a CSV byte stream (header `email,name,…`) onto `newsletter`.

    Further columns become attributes, except the ones only an export writes (`status`,
    `suppressed`, `created_at`), which are ignored so that an exported file re-imports as it
    is; a cell the export neutralised (`'=…`) is read back as it was. Re-importing an address
    updates it; empty cells leave stored values alone. An existing subscription is never
    moved out of `unsubscribed`: a reader who said stop stays stopped. A row that fails is
    reported with the line it starts on and the rest go in.
    `checkpoint` is called after each batch (the caller commits there); `progress` gets the
    number of bytes read so far. A `report` given is filled in as the import goes (for a
    caller that records progress at each checkpoint). With `resume` (a position a checkpoint
    recorded, and the report as it stood then), the rows before it are passed over: a run
    that stopped goes on where it had committed.
    """
    if status not in ("active", "pending"):
        raise Invalid("status must be 'active' or 'pending'")
    report = report if report is not None else ImportReport()
    for batch in _batches(stream, report, resume):
        batch = _without_erased(session, batch, report)
        if batch:
            _store_batch(session, batch, newsletter, status, source, report)
        if checkpoint:
            checkpoint()
        if progress:
            progress(stream.tell() if stream.seekable() else 0)
    return report


ERASED = "this address was erased at the reader's request and is suppressed: not imported"


def _without_erased(session: Session, batch: list[_Row], report: ImportReport) -> list[_Row]:
    """The rows whose address was not erased; each erased one is reported on its line."""
    erased = repo.erased_keys(session, [r.key for r in batch])
    for r in batch:
        if r.key in erased:
            report.error(r.line, ERASED)
    return [r for r in batch if r.key not in erased]


# The three inserts of an import batch. On PostgreSQL the varying columns travel as one array
# each and `unnest` spreads them into rows: one short statement per batch, where a multi-row
# INSERT of 1,000 rows spent most of its time building and converting 6,000 placeholders, and
# an executemany sends a statement per row. Elsewhere (SQLite) an executemany is in-process and
# quick.
_PG_SUBSCRIBERS = text(
    "INSERT INTO subscribers (email, email_key, name, attributes, created_at, updated_at) "
    "SELECT e, k, n, CAST(a AS jsonb), CAST(:now AS timestamptz), CAST(:now AS timestamptz) "
    "FROM unnest(CAST(:emails AS text[]), CAST(:keys AS text[]), CAST(:names AS text[]), "
    "CAST(:attrs AS text[])) AS t(e, k, n, a) "
    "ON CONFLICT (email_key) DO NOTHING RETURNING email_key, id"
)
_PG_SUBSCRIPTIONS = text(
    "INSERT INTO subscriptions (subscriber_id, newsletter_id, status, source, created_at, "
    "confirmed_at, confirmation_sent_at) "
    "SELECT s, :newsletter_id, :status, 'import', CAST(:now AS timestamptz), "
    "CAST(:confirmed_at AS timestamptz), CAST(:confirmation_sent_at AS timestamptz) "
    "FROM unnest(CAST(:subscriber_ids AS integer[])) AS t(s) "
    "ON CONFLICT (subscriber_id, newsletter_id) DO NOTHING RETURNING id"
)
_PG_CONSENT = text(
    "INSERT INTO consent_events (subscriber_id, newsletter_id, action, source, created_at) "
    "SELECT s, :newsletter_id, a, :source, CAST(:now AS timestamptz) "
    "FROM unnest(CAST(:subscriber_ids AS integer[]), CAST(:actions AS text[])) AS t(s, a)"
)


def _on_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _insert_subscribers(session: Session, rows: list[_Row], now: datetime) -> dict[str, int]:
    """Insert new subscribers; `email_key → id` of those inserted (an address a sign-up took
    meanwhile is skipped)."""
    if _on_postgresql(session):
        result = session.execute(_PG_SUBSCRIBERS, {
            "now": now, "emails": [r.email for r in rows], "keys": [r.key for r in rows],
            "names": [r.name or "" for r in rows],
            "attrs": [json.dumps(r.attributes) for r in rows],
        })
    else:
        table = Subscriber.__table__
        result = session.execute(
            dialect_insert(session, table).on_conflict_do_nothing(index_elements=["email_key"])
            .returning(table.c.email_key, table.c.id),
            [{"email": r.email, "email_key": r.key, "name": r.name or "",
              "attributes": r.attributes, "created_at": now, "updated_at": now} for r in rows],
        )
    return {key: sid for key, sid in result}


def _insert_subscriptions(
    session: Session, subscriber_ids: list[int], newsletter: Newsletter, status: str,
    now: datetime,
) -> list[int]:
    """Subscribe these subscribers to `newsletter` with `status` (skipping any that a sign-up
    subscribed meanwhile); the ids of the subscriptions made."""
    values = {"newsletter_id": newsletter.id, "status": status, "now": now,
              "confirmed_at": now if status == "active" else None,
              "confirmation_sent_at": now if status == "pending" else None}
    if _on_postgresql(session):
        result = session.execute(_PG_SUBSCRIPTIONS, {**values, "subscriber_ids": subscriber_ids})
    else:
        table = Subscription.__table__
        result = session.execute(
            dialect_insert(session, table).on_conflict_do_nothing(
                index_elements=["subscriber_id", "newsletter_id"]
            ).returning(table.c.id),
            [{"subscriber_id": sid, "newsletter_id": newsletter.id, "status": status,
              "source": "import", "created_at": now, "confirmed_at": values["confirmed_at"],
              "confirmation_sent_at": values["confirmation_sent_at"]}
             for sid in subscriber_ids],
        )
    return [sub_id for (sub_id,) in result]


def _insert_consent(
    session: Session, events: list[tuple[int, str]], newsletter: Newsletter, source: str,
    now: datetime,
) -> None:
    """Log `(subscriber id, action)` events for `newsletter`."""
    if _on_postgresql(session):
        session.execute(_PG_CONSENT, {
            "newsletter_id": newsletter.id, "source": source, "now": now,
            "subscriber_ids": [sid for sid, _ in events], "actions": [a for _, a in events],
        })
    else:
        session.execute(
            dialect_insert(session, ConsentEvent.__table__),
            [{"subscriber_id": sid, "newsletter_id": newsletter.id, "action": action,
              "source": source, "created_at": now} for sid, action in events],
        )


def _store_batch(
    session: Session,
    batch: list[_Row],
    newsletter: Newsletter,
    status: str,
    source: str,
    report: ImportReport,
) -> None:
    now = utcnow()
    existing = {
        key: (sid, name, attrs)
        for sid, key, name, attrs in session.execute(
            select(Subscriber.id, Subscriber.email_key, Subscriber.name, Subscriber.attributes)
            .where(Subscriber.email_key.in_([r.key for r in batch]))
        )
    }
    ids = {key: sid for key, (sid, _, _) in existing.items()}
    new = [r for r in batch if r.key not in existing]
    created = _insert_subscribers(session, new, now) if new else {}
    ids.update(created)
    taken = [r.key for r in new if r.key not in created]
    if taken:
        # A sign-up took these addresses since the select: theirs stays as it is.
        ids.update(
            (key, sid) for key, sid in session.execute(
                select(Subscriber.email_key, Subscriber.id).where(Subscriber.email_key.in_(taken))
            )
        )
    changes = []
    for r in batch:
        if r.key in existing:
            sid, name, attrs = existing[r.key]
            merged = {**(attrs or {}), **r.attributes}
            if (r.name is not None and r.name != name) or merged != (attrs or {}):
                changes.append({"id": sid, "name": r.name if r.name is not None else name,
                                "attributes": merged, "updated_at": now})
    if changes:
        session.execute(update(Subscriber), changes)
    # Comprehensions, not dict(result): a Result has keys() (its column names), so dict()
    # would take it for a mapping.
    subs = {
        sid: (sub_id, sub_status)
        for sub_id, sid, sub_status in session.execute(
            select(Subscription.id, Subscription.subscriber_id, Subscription.status).where(
                Subscription.newsletter_id == newsletter.id,
                Subscription.subscriber_id.in_([ids[r.key] for r in batch
                                                if r.key not in created]),
            )
        )
    } if len(created) < len(batch) else {}  # all new: none is subscribed to anything yet
    fresh, promote, consent = [], [], []
    for r in batch:
        sid = ids[r.key]
        if r.key in created:
            report.created += 1
        else:
            report.updated += 1
        if sid in subs:
            sub_id, sub_status = subs[sid]
            if sub_status == "unsubscribed":
                report.kept_unsubscribed += 1
            elif sub_status == "pending" and status == "active":
                promote.append({"id": sub_id, "status": "active", "confirmed_at": now})
                consent.append((sid, "import"))
        else:
            fresh.append(sid)
            consent.append((sid, "import" if status == "active" else "signup"))
    made = _insert_subscriptions(session, fresh, newsletter, status, now) if fresh else []
    if promote:
        session.execute(update(Subscription), promote)
    if consent:
        _insert_consent(session, consent, newsletter, source, now)
    if status == "pending" and made:
        # Only subscriptions this batch made: one a sign-up made meanwhile has its own mail.
        enqueue_after_commit(session, "missive.send_confirmations", made)


def neutralise(cell: Any) -> str:
    """A cell a spreadsheet will show as text, never run as a formula."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(FORMULA_START) else text


def export_rows(session: Session, *, newsletter: Newsletter | None) -> Iterator[str]:
    """CSV text, a line at a time: `email,name,status,suppressed,created_at` then attributes.

    With a newsletter, `status` is the subscription status there and only its subscribers are
    listed; without one, `status` lists `slug:status` for every newsletter.
    """
    def base_query() -> Any:
        stmt = (select(Subscriber).where(Subscriber.email != "").order_by(Subscriber.id)
                .execution_options(yield_per=BATCH))
        if newsletter is not None:
            stmt = stmt.join(Subscription).where(Subscription.newsletter_id == newsletter.id)
        return stmt

    # First pass: attribute names, so that every row has the same columns.
    attr_names: set[str] = set()
    for attrs in session.scalars(
        base_query().with_only_columns(Subscriber.attributes)
    ):
        attr_names.update((attrs or {}).keys())
    columns = sorted(attr_names)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def line(cells: Iterable[Any]) -> str:
        buf.seek(0)
        buf.truncate()
        writer.writerow([neutralise(c) for c in cells])
        return buf.getvalue()

    yield line(["email", "name", "status", "suppressed", "created_at", *columns])
    slugs = {nid: slug for nid, slug in session.execute(select(Newsletter.id, Newsletter.slug))}
    for chunk in session.scalars(base_query()).partitions():
        ids = [s.id for s in chunk]
        statuses: dict[int, list[tuple[int, str]]] = {}
        for sid, nid, st in session.execute(
            select(Subscription.subscriber_id, Subscription.newsletter_id, Subscription.status)
            .where(Subscription.subscriber_id.in_(ids))
        ):
            statuses.setdefault(sid, []).append((nid, st))
        suppressed = {
            key: reason
            for key, reason in session.execute(
                select(Suppression.email_key, Suppression.reason).where(
                    Suppression.email_key.in_([s.email_key for s in chunk])
                )
            )
        }
        for s in chunk:
            subs = statuses.get(s.id, [])
            if newsletter is not None:
                status = next((st for nid, st in subs if nid == newsletter.id), "")
            else:
                status = " ".join(f"{slugs[nid]}:{st}" for nid, st in sorted(subs))
            attrs = s.attributes or {}
            yield line([s.email, s.name, status, suppressed.get(s.email_key, ""),
                        s.created_at.isoformat(), *(attrs.get(c, "") for c in columns)])
