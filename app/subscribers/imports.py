"""CSV imports from the newsroom, run by a worker, with their progress recorded as they go.

The upload is stored in the database in parts (the web app and the workers share the database,
not a disk), a worker imports it with the same rules as the API and the CLI (`csvio`), and after
each batch the counts so far, the errors with their lines and the bytes read are committed with
the batch: the import page shows them while it runs. The stored file is dropped when it ends.

An import survives a lost task and a killed worker. A run claims its import with a fresh
fencing token and a lease counted by the database's clock, and each batch commits only where the
import still carries that token under an unexpired lease, renewing it: a run that lost its claim
stops with its batch rolled back. The beat's `sweep` sends the task again for an import queued
past its time or running past its lease; the next run starts after the last committed batch,
from the counts and errors committed with it, so no row is imported twice or left out.
"""

from __future__ import annotations

import io
import logging
import os
import socket
from typing import IO, Any

from sqlalchemy import and_, case, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import UTCDateTime, session_scope, utcnow
from app.errors import AppError, Invalid, NotFound
from app.leases import db_now, new_token
from app.newsletters.models import Newsletter
from app.queue import enqueue_after_commit
from app.subscribers import csvio
from app.subscribers.models import ImportJob, ImportJobPart

log = logging.getLogger(__name__)

PART_BYTES = 1024 * 1024
TASK = "missive.import_subscribers"


# Runs of one import that may be interrupted before it stops for good.
MAX_RESUMES = 5
GAVE_UP = (f"The import was interrupted {MAX_RESUMES + 1} times, each time at the same kind of "
           "place, so it stopped; the lines before that place are in. Try the rest of the file "
           "in a smaller part, or ask your administrator to look at the worker's log.")


class TooLarge(AppError):
    status_code = 413


def start(session: Session, upload: IO[bytes], *, newsletter: Newsletter, filename: str,
          pending: bool, created_by: str) -> ImportJob:
    """Store an uploaded CSV and queue its import (after the commit). TooLarge past the
    configured size, Invalid for an empty file; the caller rolls back what was stored then."""
    job = ImportJob(newsletter_id=newsletter.id, filename=filename[:200],
                    subscription_status="pending" if pending else "active",
                    created_by=created_by[:200], errors=[])
    session.add(job)
    session.flush()
    limit, size, seq = get_settings().max_csv_bytes, 0, 0
    while chunk := upload.read(PART_BYTES):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The file is too large (at most {limit // (1024 * 1024)} MB).")
        part = ImportJobPart(job_id=job.id, seq=seq, data=chunk)
        session.add(part)
        session.flush()
        session.expunge(part)  # stored: the session need not hold the file whole
        seq += 1
    if size == 0:
        raise Invalid("The file is empty.")
    job.size_bytes = size
    # Should its task be lost, the sweep sends it again once this has passed.
    session.execute(update(ImportJob).where(ImportJob.id == job.id).values(
        lease_until=db_now(get_settings().import_requeue_seconds)))
    enqueue_after_commit(session, TASK, job.id)
    return job


def get(session: Session, job_id: int) -> ImportJob:
    """The import with this id, or NotFound."""
    job = session.get(ImportJob, job_id)
    if job is None:
        raise NotFound(f"no import {job_id}")
    return job


class _StoredFile(io.RawIOBase):
    """The stored parts of an upload, read in order as one file."""

    def __init__(self, session: Session, job_id: int) -> None:
        self._session, self._job_id = session, job_id
        self._seq, self._pending, self._done = 0, b"", False
        self.position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        # Not seekable, but a BufferedReader over it can say how far its reader has got.
        return self.position

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            part = self._session.scalar(select(ImportJobPart.data).where(
                ImportJobPart.job_id == self._job_id, ImportJobPart.seq == self._seq))
            self._seq += 1
            if part is None:
                self._done = True
            else:
                self._pending = bytes(part)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.position += size
        return size


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def _claim(session: Session, job_id: int, token: int) -> ImportJob | None:
    """Take a queued import for this run, under `token` and a lease counted by the database's
    clock; None if another run took it or it has ended. Taking up one that a run had started
    counts as a resume."""
    taken = session.execute(update(ImportJob).where(
        ImportJob.id == job_id, ImportJob.status == "queued",
    ).values(
        status="running", claim_token=token, claimed_by=_me(),
        lease_until=db_now(get_settings().import_lease_seconds),
        started_at=func.coalesce(ImportJob.started_at, literal(utcnow(), UTCDateTime())),
        resumes=ImportJob.resumes + case((ImportJob.started_at.is_(None), 0), else_=1),
    ))
    if not getattr(taken, "rowcount", 0):
        return None
    session.commit()
    return session.get(ImportJob, job_id)


class LostClaim(Exception):
    """This run no longer holds its import (its lease ran out; the sweep handed it on)."""


def _fenced(session: Session, job_id: int, token: int, **values: Any) -> None:
    """Write `values` to the import and renew the lease, provided this run still holds it under
    an unexpired lease; otherwise LostClaim, and the caller rolls back all it did since its
    last commit."""
    held = session.execute(update(ImportJob).where(
        ImportJob.id == job_id, ImportJob.status == "running", ImportJob.claim_token == token,
        ImportJob.lease_until > db_now(),
    ).values({"lease_until": db_now(get_settings().import_lease_seconds), **values}))
    if not getattr(held, "rowcount", 0):
        raise LostClaim(f"import {job_id}")


def _progress(report: csvio.ImportReport, bytes_done: int) -> dict[str, Any]:
    return {"created": report.created, "updated": report.updated,
            "kept_unsubscribed": report.kept_unsubscribed, "error_count": report.error_count,
            "errors": list(report.errors), "bytes_done": bytes_done, "lines_done": report.lines}


def _finish(session: Session, job_id: int, token: int, status: str, detail: str = "",
            **values: Any) -> None:
    _fenced(session, job_id, token, status=status, detail=detail, finished_at=utcnow(),
            claim_token=None, lease_until=None, **values)
    session.execute(delete(ImportJobPart).where(ImportJobPart.job_id == job_id))
    session.commit()


def _committed_report(job: ImportJob) -> csvio.ImportReport:
    """The counts and errors as the last checkpoint committed them."""
    return csvio.ImportReport(
        created=job.created, updated=job.updated, kept_unsubscribed=job.kept_unsubscribed,
        error_count=job.error_count, errors=list(job.errors), lines=job.lines_done)


def run(job_id: int) -> None:
    """Import a stored upload (the worker's task), from where the last run committed if one
    was interrupted; a delivery of the task for an import that another run holds, or that
    has ended, does nothing."""
    token = new_token()
    with session_scope() as session:
        job = _claim(session, job_id, token)
        if job is None:
            return
        newsletter = session.get(Newsletter, job.newsletter_id)
        report = _committed_report(job)
        resume = csvio.Position(job.bytes_done, job.lines_done) if job.bytes_done else None
        status, source = job.subscription_status, f"csv-import:{job.created_by}"[:200]
        size = job.size_bytes
        raw = _StoredFile(session, job_id)
        stream = io.BufferedReader(raw, buffer_size=64 * 1024)

        def checkpoint() -> None:
            # The batch and the progress it makes, in one commit, if this run still holds it.
            _fenced(session, job_id, token, **_progress(report, stream.tell()))
            session.commit()

        try:
            try:
                if newsletter is None:
                    raise NotFound("the newsletter was deleted")
                csvio.import_csv(session, stream, newsletter=newsletter, status=status,
                                 source=source, checkpoint=checkpoint, report=report,
                                 resume=resume)
            except LostClaim:
                raise
            except Exception as exc:
                session.rollback()
                if not isinstance(exc, AppError):
                    log.exception("import %s stopped", job_id)
                detail = (str(exc.detail) if isinstance(exc, AppError) else
                          "The import stopped on an unexpected error; the lines before it are "
                          "in.")
                _finish(session, job_id, token, "failed", detail)
                return
            _finish(session, job_id, token, "done", **_progress(report, size))
        except LostClaim:
            # Another run has it (or will, from the sweep): what this one did since its last
            # commit is dropped, and that run does it again.
            session.rollback()
            log.warning("import %s: lease lost, stopping; it resumes from its last batch",
                        job_id)


def sweep(session: Session) -> list[int]:
    """Send again the task of each import that no worker is running: queued past its time (its
    task was lost) or running past its lease (its worker died). The caller commits; the new
    run goes on from the last committed batch. Returns the imports sent again."""
    stalled = and_(ImportJob.status.in_(("queued", "running")),
                   or_(ImportJob.lease_until.is_(None), ImportJob.lease_until < db_now()))
    # A file whose runs keep dying at the same place (a worker killed by it, say) would be
    # handed on for ever: after MAX_RESUMES it stops, keeping what went in.
    given_up = session.scalars(update(ImportJob).where(
        stalled, ImportJob.status == "running", ImportJob.resumes >= MAX_RESUMES,
    ).values(status="failed", claim_token=None, lease_until=None, finished_at=utcnow(),
             detail=GAVE_UP).returning(ImportJob.id)).all()
    if given_up:
        log.warning("imports %s stopped after %d interruptions", given_up, MAX_RESUMES + 1)
        session.execute(delete(ImportJobPart).where(ImportJobPart.job_id.in_(given_up)))
    requeued = []
    for job_id in session.scalars(select(ImportJob.id).where(stalled).order_by(ImportJob.id)
                                  .limit(100)).all():
        taken = session.execute(update(ImportJob).where(ImportJob.id == job_id, stalled).values(
            status="queued", claim_token=None, claimed_by="",
            lease_until=db_now(get_settings().import_requeue_seconds)))
        if getattr(taken, "rowcount", 0):
            enqueue_after_commit(session, TASK, job_id)
            requeued.append(job_id)
    return requeued
