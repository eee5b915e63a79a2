"""What running a CSV import as a newsroom job costs, against importing the file directly.

    .venv/bin/python bench/imports.py [-n ROWS] [--pg postgres@127.0.0.1:5432]

In a fresh PostgreSQL database: a CSV of ROWS new readers imported with `csvio.import_csv` (as the
API and the CLI do), then another of ROWS other readers through the newsroom's path
(`imports.start` storing the upload in parts, `imports.run` — the worker task's body — recording
progress with each batch). Prints rows per second for both, then the time to erase one reader
among them.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def csv_of(prefix: str, rows: int) -> bytes:
    lines = [f"{prefix}{i:07d}@example.org,Reader {i},Town {i % 50}\n" for i in range(rows)]
    return ("email,name,town\n" + "".join(lines)).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--rows", type=int, default=100_000)
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    args = parser.parse_args()

    import psycopg

    dbname = f"missive_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(f"postgresql://{args.pg}/postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{dbname}"')
    os.environ.update({
        "MISSIVE_DATABASE_URL": f"postgresql+psycopg://{args.pg}/{dbname}",
        "MISSIVE_SECRET_KEY": secrets.token_urlsafe(32),
        "MISSIVE_VAR_DIR": tempfile.mkdtemp(prefix="missive-bench-"),
        "MISSIVE_MAX_CSV_BYTES": str(1 << 30),
    })
    try:
        from app import demo
        from app.cli import _upgrade
        from app.db import session_scope
        from app.privacy import erasure
        from app.subscribers import csvio, imports, repository
        from app.subscribers.service import Actor

        _upgrade()
        # No broker here: the job's wake-up is dropped and its body is run below, in process.
        imports.enqueue_after_commit = lambda *a: None  # type: ignore[assignment]
        with session_scope() as session:
            newsletter_id = demo.load(session).id
        direct, job_body = csv_of("direct", args.rows), csv_of("job", args.rows)

        with session_scope() as session:
            newsletter = demo.load(session)
            t0 = time.perf_counter()
            csvio.import_csv(session, io.BytesIO(direct), newsletter=newsletter,
                             checkpoint=session.commit)
            direct_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        with session_scope() as session:
            newsletter = demo.load(session)
            job = imports.start(session, io.BytesIO(job_body), newsletter=newsletter,
                                filename="bench.csv", pending=False, created_by="bench")
            job_id = job.id
        stored_s = time.perf_counter() - t0
        imports.run(job_id)
        job_s = time.perf_counter() - t0
        with session_scope() as session:
            done = imports.get(session, job_id)
            assert done.status == "done" and done.created == args.rows, (done.status, done.detail)

        t0 = time.perf_counter()
        with session_scope() as session:
            reader = repository.get_by_email_key(session, f"job{args.rows // 2:07d}@example.org")
            assert reader is not None
            erasure.erase(session, reader.id, Actor(source="bench"))
        erase_ms = 1000 * (time.perf_counter() - t0)

        print(f"{args.rows} rows ({len(direct) / 1e6:.1f} MB) into newsletter {newsletter_id}")
        print(f"  direct import (API/CLI path): {direct_s:6.2f} s  "
              f"{args.rows / direct_s:8.0f} rows/s")
        print(f"  newsroom job (store + run):   {job_s:6.2f} s  {args.rows / job_s:8.0f} rows/s"
              f"  (storing the upload: {stored_s:.2f} s)")
        print(f"  erase one reader among {2 * args.rows}: {erase_ms:.0f} ms")
    finally:
        from app.db import get_engine

        get_engine().dispose()
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
