"""A newsroom import finishes when its task is lost or its worker is killed, each row once."""

from __future__ import annotations

import csv
import io
import os
import signal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests.conftest import PREFIX, WorkerProcess, wait_until


def _csv(rows: int) -> bytes:
    """Readers r0… with, now and then, a bad address, an address seen before and a name over
    two lines (refused, and the lines after it are numbered counting both)."""
    lines = ["email,name,city"]
    for i in range(rows):
        if i % 500 == 7:
            lines.append(f"not-an-address-{i},Bad {i},Oslo")
        elif i % 700 == 9:
            lines.append(f"r{i - 650}@example.org,Again {i},Rome")
        elif i % 900 == 11:
            lines.append(f'r{i}@example.org,"Two\nLines {i}",Lima')
        else:
            lines.append(f"r{i}@example.org,Reader {i},Kyiv")
    return ("\n".join(lines) + "\n").encode()


def _clean_run(newsletter_id: int, body: bytes) -> dict[str, Any]:
    """What one uninterrupted import of `body` gives (rolled back: it only measures)."""
    from app.db import session_scope
    from app.newsletters.models import Newsletter
    from app.subscribers import csvio

    with session_scope() as session:
        newsletter = session.get(Newsletter, newsletter_id)
        report = csvio.import_csv(session, io.BytesIO(body), newsletter=newsletter).as_dict()
        session.rollback()
    return report


def _start(db: Any, newsletter: Any, body: bytes, monkeypatch: pytest.MonkeyPatch) -> int:
    """An import stored as the upload page stores it, but whose task message is lost."""
    from app.subscribers import imports

    with monkeypatch.context() as m:
        m.setattr(imports, "enqueue_after_commit", lambda *args: None)
        job = imports.start(db, io.BytesIO(body), newsletter=newsletter, filename="readers.csv",
                            pending=False, created_by="tests")
        db.commit()
    return job.id


def _job(db: Any, job_id: int) -> Any:
    from app.subscribers import imports

    db.expire_all()
    return imports.get(db, job_id)


def _report_of(job: Any) -> dict[str, Any]:
    return {"created": job.created, "updated": job.updated,
            "kept_unsubscribed": job.kept_unsubscribed, "error_count": job.error_count,
            "errors": job.errors}


def _assert_each_row_once(db: Any, newsletter_id: int, body: bytes) -> None:
    from app.subscribers.models import ConsentEvent, Subscriber, Subscription

    rows = list(csv.reader(io.StringIO(body.decode())))[1:]
    # A name over two lines is refused (no control characters in a name): an error line.
    addresses = {email for email, name, _ in rows if email.startswith("r") and "\n" not in name}
    stored = db.scalars(select(Subscriber.email)).all()
    assert sorted(stored) == sorted(addresses)
    assert db.scalar(select(func.count()).select_from(Subscription).where(
        Subscription.newsletter_id == newsletter_id)) == len(addresses)
    assert db.scalar(select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.newsletter_id == newsletter_id)) == len(addresses)


def test_an_import_whose_task_was_lost_is_sent_again_by_the_beat(newsletter, db, worker,
                                                                  monkeypatch):
    from app import beat
    from app.subscribers.models import ImportJob

    body = _csv(1200)
    clean = _clean_run(newsletter.id, body)
    job_id = _start(db, newsletter, body, monkeypatch)
    beat.tick()
    assert _job(db, job_id).status == "queued"  # only just queued: its task may yet come
    # Some minutes later, still no worker has taken it.
    db.execute(update(ImportJob).where(ImportJob.id == job_id).values(
        lease_until=ImportJob.created_at))
    db.commit()
    beat.tick()
    wait_until(lambda: _job(db, job_id).status == "done", timeout=60,
               what="the swept import to finish")
    job = _job(db, job_id)
    assert _report_of(job) == clean and job.resumes == 0
    _assert_each_row_once(db, newsletter.id, body)


def test_a_run_that_lost_its_lease_commits_nothing_and_the_next_goes_on(newsletter, db,
                                                                         signed_in, monkeypatch):
    """In process: the sweep hands the import on while a run is mid-way; that run's batch is
    rolled back, and the next run starts after the last batch committed."""
    from app.db import session_scope
    from app.subscribers import imports

    body = _csv(3500)
    clean = _clean_run(newsletter.id, body)
    job_id = _start(db, newsletter, body, monkeypatch)
    sent: list[Any] = []
    monkeypatch.setattr(imports, "enqueue_after_commit", lambda *args: sent.append(args[1:]))
    original, calls = imports._progress, []

    def lose_the_lease_at_the_second_batch(report: Any, bytes_done: int) -> dict[str, Any]:
        calls.append(bytes_done)
        if len(calls) == 2:
            with session_scope() as other:  # the beat, while this run is mid-batch
                other.execute(update(imports.ImportJob).where(imports.ImportJob.id == job_id)
                              .values(lease_until=imports.ImportJob.created_at))
                other.commit()
                assert imports.sweep(other) == [job_id]
        return original(report, bytes_done)

    monkeypatch.setattr(imports, "_progress", lose_the_lease_at_the_second_batch)
    imports.run(job_id)
    job = _job(db, job_id)
    # Handed back with the first batch in and the second dropped, and its task sent again.
    assert job.status == "queued" and sent == [(imports.TASK, job_id)]
    assert job.bytes_done == calls[0] and job.created + job.updated < clean["created"]
    editor = signed_in("editor")
    page = editor.get(f"/admin/subscribers/imports/{job_id}").text
    assert "Interrupted: its worker stopped." in page and "Resumed after" not in page
    monkeypatch.setattr(imports, "_progress", original)
    imports.run(job_id)
    job = _job(db, job_id)
    assert job.status == "done" and job.resumes == 1
    assert _report_of(job) == clean
    _assert_each_row_once(db, newsletter.id, body)
    page = editor.get(f"/admin/subscribers/imports/{job_id}").text
    assert "Resumed after an interruption" in page and "Interrupted:" not in page


def test_a_worker_killed_mid_import_is_taken_up_by_another(newsletter, db, worker, test_env,
                                                           tmp_path, monkeypatch):
    from app.config import Settings
    from app.db import get_sessionmaker, session_scope
    from app.queue import make_celery
    from app.subscribers import imports
    from app.subscribers.models import ImportJob, Subscriber
    from app.validation import email_key

    body = _csv(5000)
    clean = _clean_run(newsletter.id, body)
    # A worker of its own (its own broker keys), to be killed.
    own = {**test_env, "MISSIVE_REDIS_PREFIX": f"{PREFIX}kill:"}
    doomed = WorkerProcess(own, tmp_path / "doomed.log")
    # An address of the second batch, being added by someone else and not yet committed: the
    # worker waits there, so the kill lands after the first batch and before the end.
    holder = get_sessionmaker()()
    holder.add(Subscriber(email="r1500@example.org", email_key=email_key("r1500@example.org")))
    holder.flush()
    try:
        job_id = _start(db, newsletter, body, monkeypatch)
        make_celery(Settings(redis_prefix=own["MISSIVE_REDIS_PREFIX"])).send_task(
            imports.TASK, args=[job_id])
        job = wait_until(lambda: (j := _job(db, job_id)).bytes_done > 0 and j, timeout=60,
                         what="the first batch")
        os.kill(int(job.claimed_by.rsplit(":", 1)[1]), signal.SIGKILL)
    finally:
        doomed.stop()
        holder.rollback()
        holder.close()
    job = _job(db, job_id)
    assert job.status == "running" and 0 < job.bytes_done < len(body)

    def sweep() -> list[int]:
        with session_scope() as session:
            return imports.sweep(session)

    assert sweep() == []  # its lease still runs: the worker might only be slow
    db.execute(update(ImportJob).where(ImportJob.id == job_id).values(
        lease_until=ImportJob.created_at))  # the lease has run out
    db.commit()
    assert sweep() == [job_id]
    wait_until(lambda: _job(db, job_id).status == "done", timeout=60,
               what="another worker to finish the import")
    job = _job(db, job_id)
    assert _report_of(job) == clean and job.resumes == 1
    _assert_each_row_once(db, newsletter.id, body)


def test_an_import_interrupted_again_and_again_stops_keeping_what_went_in(
        newsletter, db, signed_in, monkeypatch):
    """A file that kills its worker at the same place every time is not handed on for ever."""
    from app.subscribers import imports
    from app.subscribers.models import ImportJob, ImportJobPart

    job_id = _start(db, newsletter, _csv(50), monkeypatch)
    sent: list[Any] = []
    monkeypatch.setattr(imports, "enqueue_after_commit", lambda *args: sent.append(args[1:]))
    # Its runs have died (lease run out) as often as allowed, the last one mid-way.
    db.execute(update(ImportJob).where(ImportJob.id == job_id).values(
        status="running", resumes=imports.MAX_RESUMES - 1, created=20,
        lease_until=ImportJob.created_at))
    db.commit()
    assert imports.sweep(db) == [job_id] and sent == [(imports.TASK, job_id)]
    db.execute(update(ImportJob).where(ImportJob.id == job_id).values(
        status="running", resumes=imports.MAX_RESUMES, lease_until=ImportJob.created_at))
    db.commit()
    assert imports.sweep(db) == []
    db.commit()
    job = _job(db, job_id)
    assert job.status == "failed" and job.created == 20 and len(sent) == 1
    assert db.scalar(select(func.count()).select_from(ImportJobPart)) == 0
    page = signed_in("editor").get(f"/admin/subscribers/imports/{job_id}").text
    assert "interrupted 6 times" in page and "smaller part" in page
