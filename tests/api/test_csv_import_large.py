"""A 100,000-row import goes in whole, and its memory does not grow with the file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, select

from app.subscribers.models import ConsentEvent, Subscriber, Subscription

ROOT = Path(__file__).resolve().parents[2]
HEADER = b"email,name,city,company,note\n"


def csv_chunks(n: int, prefix: str = "reader", per_chunk: int = 1000) -> Iterator[bytes]:
    """A CSV of `n` rows, made a chunk at a time as it is sent (never whole in memory)."""
    yield HEADER
    for start in range(0, n, per_chunk):
        yield "".join(
            f"{prefix}{i:06d}@example.org,Reader {i},City {i % 97},Company {i % 1013},"
            f"note for reader {i} with some text to make the row as wide as real ones are\n"
            for i in range(start, min(n, start + per_chunk))
        ).encode()


def test_100k_rows_through_the_api(client, auth, newsletter, db):
    started = time.monotonic()
    r = client.post("/api/v1/subscribers/import", params={"newsletter": "alliance-digest"},
                    content=csv_chunks(100_000), headers={**auth, "content-type": "text/csv"})
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["updated"], report["errors"]) == (100_000, 0, [])
    assert db.scalar(select(func.count()).select_from(Subscriber)) == 100_000
    assert db.scalar(select(func.count()).select_from(Subscription).where(
        Subscription.newsletter_id == newsletter.id, Subscription.status == "active")) == 100_000
    assert db.scalar(select(func.count()).select_from(ConsentEvent)) == 100_000
    for i in (0, 54_321, 99_999):
        s = db.scalars(select(Subscriber).where(
            Subscriber.email == f"reader{i:06d}@example.org")).one()
        assert s.name == f"Reader {i}"
        assert s.attributes["city"] == f"City {i % 97}"
        assert s.attributes["company"] == f"Company {i % 1013}"
    print(f"\n100k rows through the API in {took:.1f}s")


def write_csv(path: Path, n: int, prefix: str) -> Path:
    with path.open("wb") as fh:
        for chunk in csv_chunks(n, prefix):
            fh.write(chunk)
    return path


# Runs the command given after the file name as its only child and writes that child's peak RSS
# into the file. A child forked straight from pytest would report pytest's own RSS as its peak
# (Linux carries the high-water mark of the forked copy over the exec), which hid the import's
# real peak below pytest's size; forked from this small process it cannot.
MEASURE = (
    "import os, resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "with open(sys.argv[1], 'w') as fh:\n"
    "    fh.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def run_import(path: Path, env: dict[str, str]) -> tuple[int, str, str, int, float]:
    """Run `missive subscribers import`; (exit code, stdout, stderr, peak RSS in KiB, seconds)."""
    out, err, rss = (path.with_suffix(s) for s in (".out", ".err", ".rss"))
    started = time.monotonic()
    with out.open("wb") as o, err.open("wb") as e:
        code = subprocess.call(
            [sys.executable, "-c", MEASURE, str(rss), sys.executable, "-m", "app.cli",
             "subscribers", "import", str(path), "--newsletter", "alliance-digest"],
            cwd=ROOT, env={**os.environ, **env}, stdout=o, stderr=e,
        )
    took = time.monotonic() - started
    return code, out.read_text(), err.read_text(), int(rss.read_text()), took


def test_cli_import_memory_does_not_grow_with_the_file(newsletter, test_env, tmp_path, db):

    code, out, err, small_rss, small_took = run_import(
        write_csv(tmp_path / "small.csv", 10_000, "small"), test_env)
    assert code == 0, err
    assert "created 10000, updated 0" in out

    code, out, err, big_rss, big_took = run_import(
        write_csv(tmp_path / "big.csv", 100_000, "big"), test_env)
    assert code == 0, err
    assert "created 100000, updated 0" in out
    assert err.strip() == ""
    assert db.scalar(select(func.count()).select_from(Subscriber)) == 110_000

    growth_mb = (big_rss - small_rss) / 1024
    print(f"\nCLI import: 10k rows {small_took:.1f}s peak {small_rss / 1024:.0f} MB; "
          f"100k rows {big_took:.1f}s peak {big_rss / 1024:.0f} MB (growth {growth_mb:.1f} MB)")
    # Ten times the rows; held in memory they would take well over 100 MB more.
    assert growth_mb < 40, f"peak RSS grew by {growth_mb:.0f} MB from 10k to 100k rows"
