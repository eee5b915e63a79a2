"""CSV imports from the newsroom, run by a worker, with their progress recorded as they go.

The upload is stored in the database in parts (the web app and the workers share the database,
not a disk), a worker imports it with the same rules as the API and the CLI (`csvio`), and after
each batch the counts so far, the errors with their lines and the bytes read are committed with
the batch: the import page shows them while it runs. The stored file is dropped when it ends.
"""

from __future__ import annotations

import io
import logging
from typing import IO, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope, utcnow
from app.errors import AppError, Invalid, NotFound
from app.newsletters.models import Newsletter
from app.queue import enqueue_after_commit
from app.subscribers import csvio
from app.subscribers.models import ImportJob, ImportJobPart

log = logging.getLogger(__name__)

PART_BYTES = 1024 * 1024
TASK = "missive.import_subscribers"


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


def _claim(session: Session, job_id: int) -> ImportJob | None:
    """Take a queued import for this worker; None if another took it or it has run."""
    taken = session.execute(update(ImportJob).where(
        ImportJob.id == job_id, ImportJob.status == "queued",
    ).values(status="running", started_at=utcnow()))
    if not getattr(taken, "rowcount", 0):
        return None
    session.commit()
    return session.get(ImportJob, job_id)


def _record(job: ImportJob, report: csvio.ImportReport, bytes_done: int) -> None:
    job.created, job.updated = report.created, report.updated
    job.kept_unsubscribed, job.error_count = report.kept_unsubscribed, report.error_count
    job.errors = list(report.errors)
    job.bytes_done = bytes_done


def _finish(session: Session, job: ImportJob, status: str, detail: str = "") -> None:
    job.status, job.detail, job.finished_at = status, detail, utcnow()
    session.execute(delete(ImportJobPart).where(ImportJobPart.job_id == job.id))
    session.commit()


def run(job_id: int) -> None:
    """Import a stored upload (the worker's task); running it again does nothing."""
    with session_scope() as session:
        job = _claim(session, job_id)
        if job is None:
            return
        newsletter = session.get(Newsletter, job.newsletter_id)
        report = csvio.ImportReport()
        raw = _StoredFile(session, job.id)
        stream = io.BufferedReader(raw, buffer_size=64 * 1024)

        def checkpoint() -> None:
            # The batch and the progress it makes, in one commit.
            _record(job, report, stream.tell())
            session.commit()

        try:
            if newsletter is None:
                raise NotFound("the newsletter was deleted")
            csvio.import_csv(session, stream, newsletter=newsletter,
                             status=job.subscription_status,
                             source=f"csv-import:{job.created_by}"[:200],
                             checkpoint=checkpoint, report=report)
        except Exception as exc:
            session.rollback()
            if not isinstance(exc, AppError):
                log.exception("import %s stopped", job.id)
            detail = (str(exc.detail) if isinstance(exc, AppError) else
                      "The import stopped on an unexpected error; the lines before it are in.")
            _finish(session, job, "failed", detail)
            return
        _record(job, report, job.size_bytes)
        _finish(session, job, "done")
