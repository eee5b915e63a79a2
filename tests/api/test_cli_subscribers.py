"""`missive subscribers import|export`, run as a user runs them: a process of its own."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from app.subscribers.models import ConsentEvent, Subscriber, Subscription

ROOT = Path(__file__).resolve().parents[2]


def missive(env: dict[str, str], *args: str, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The failure was reported as the contract says: non-zero, one line, no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_import_reports_a_bad_row_with_its_line_and_imports_the_rest(test_env, newsletter,
                                                                      tmp_path, db):
    path = tmp_path / "readers.csv"
    path.write_bytes(
        b"email,name,city\n"
        b"ada@example.org,Ada,London\n"
        b"not-an-address,Bad,Rome\n"
        b'grace@example.org,"Grace\rHopper",Arlington\n'
        b"linus@example.org,Linus,Helsinki\n"
        + "jose@example.org,José,Lima\n".encode("latin-1")
        + b"zoe@example.org,Zoe,Zurich,extra\n"
    )
    result = missive(test_env, "subscribers", "import", str(path), "--newsletter",
                     "alliance-digest")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4", "line 6", "line 7"]
    assert "invalid email" in errors[0]
    assert "line breaks" in errors[1]
    assert "UTF-8" in errors[2]
    assert "4 cells but the header has 3 columns" in errors[3]
    assert "created 2, updated 0, kept unsubscribed 0, errors 4" in result.stdout
    assert sorted(db.scalars(select(Subscriber.email))) == ["ada@example.org",
                                                            "linus@example.org"]
    assert db.scalar(select(func.count()).select_from(Subscription).where(
        Subscription.status == "active")) == 2
    assert set(db.scalars(select(ConsentEvent.source))) == {"csv-import:cli"}


def test_import_onto_an_unknown_newsletter_fails_in_one_line(test_env, newsletter, tmp_path, db):
    path = tmp_path / "readers.csv"
    path.write_text("email\nada@example.org\n")
    result = missive(test_env, "subscribers", "import", str(path), "--newsletter", "nope")
    assert one_line_error(result) == "missive: no newsletter 'nope'"
    assert db.scalar(select(func.count()).select_from(Subscriber)) == 0


@pytest.mark.parametrize("content,reason", [
    (b"name,city\nAda,London\n", "'email' column"),
    (b"", "empty"),
    ("email,näme\n".encode("utf-16"), "UTF-8"),
])
def test_a_file_that_cannot_be_imported_fails_in_one_line(test_env, newsletter, tmp_path, db,
                                                         content, reason):
    path = tmp_path / "readers.csv"
    path.write_bytes(content)
    result = missive(test_env, "subscribers", "import", str(path), "--newsletter",
                     "alliance-digest")
    assert reason in one_line_error(result)
    assert db.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_export_prints_csv(test_env, client, auth, newsletter, tmp_path):
    for email, name, status in (("ada@example.org", "=Ada", "active"),
                                ("bob@example.org", "Bob", "unsubscribed")):
        assert client.post("/api/v1/subscribers", headers=auth, json={
            "email": email, "name": name, "attributes": {"city": "-Oslo"},
            "subscriptions": [{"newsletter": "alliance-digest", "status": status}]},
        ).status_code == 201
    client.post("/api/v1/subscribers", headers=auth, json={"email": "nobody@example.org"})

    result = missive(test_env, "subscribers", "export", "--newsletter", "alliance-digest")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout, newline="")))
    assert rows[0] == ["email", "name", "status", "suppressed", "created_at", "city"]
    assert [(r[0], r[1], r[2], r[5]) for r in rows[1:]] == [
        ("ada@example.org", "'=Ada", "active", "'-Oslo"),
        ("bob@example.org", "Bob", "unsubscribed", "'-Oslo"),
    ]

    everyone = missive(test_env, "subscribers", "export")
    assert [r[0] for r in csv.reader(io.StringIO(everyone.stdout))][1:] == [
        "ada@example.org", "bob@example.org", "nobody@example.org"]

    out = tmp_path / "out.csv"
    assert missive(test_env, "subscribers", "export", "--newsletter", "alliance-digest",
                   "-o", str(out)).returncode == 0
    assert out.read_text(encoding="utf-8") == result.stdout
    # The API answers the same bytes.
    api = client.get("/api/v1/subscribers/export", headers=auth,
                     params={"newsletter": "alliance-digest"})
    assert out.read_bytes() == api.content

    assert one_line_error(missive(test_env, "subscribers", "export", "--newsletter", "nope")
                          ) == "missive: no newsletter 'nope'"


def test_the_embedded_sqlite_database_takes_the_same_import(test_env, tmp_path):
    """`make run` keeps subscribers in SQLite, where the importer inserts another way."""
    db_path = tmp_path / "missive.db"
    env = {**test_env, "MISSIVE_DATABASE_URL": f"sqlite:///{db_path}"}
    for args in (("db", "upgrade"), ("demo", "load")):
        done = missive(env, *args)
        assert done.returncode == 0, done.stderr
    path = tmp_path / "readers.csv"
    path.write_text("email,name,city\nAda@Example.org,Ada,London\nbad,Bad,x\n"
                    "bob@example.org,Bob,\n")
    first = missive(env, "subscribers", "import", str(path), "--newsletter", "alliance-digest")
    assert first.returncode == 0, first.stderr
    assert "created 2, updated 0" in first.stdout
    assert first.stderr.strip().startswith("line 3: invalid email")

    path.write_text("email,name,plan\nada@example.org,,pro\ncyd@example.org,Cyd,\n")
    again = missive(env, "subscribers", "import", str(path), "--newsletter", "alliance-digest")
    assert "created 1, updated 1" in again.stdout, again.stderr

    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Subscriber.email, Subscriber.name, Subscriber.attributes)
                                .order_by(Subscriber.id)).all()
            statuses = conn.execute(select(Subscription.status)).scalars().all()
            consent = conn.execute(select(func.count()).select_from(ConsentEvent)).scalar()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("Ada@example.org", "Ada", {"city": "London", "plan": "pro"}),
        ("bob@example.org", "Bob", {}),
        ("cyd@example.org", "Cyd", {}),
    ]
    assert statuses == ["active"] * 3
    assert consent == 3

    exported = missive(env, "subscribers", "export", "--newsletter", "alliance-digest")
    assert [r[0] for r in csv.reader(io.StringIO(exported.stdout))][1:] == [
        "Ada@example.org", "bob@example.org", "cyd@example.org"]
