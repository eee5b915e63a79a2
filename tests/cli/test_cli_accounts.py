"""The `missive` command as an operator uses it: tokens, accounts, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, free_port


def missive(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env={**os.environ, **env},
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("missive: ")
    return lines[0]


def test_token_create_prints_a_working_token(test_env, client):
    result = missive("token", "create", "newsroom", env=test_env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("msv_") and len(token) > 40
    assert client.get("/api/v1/newsletters",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # --replace revokes the earlier token of that name.
    assert missive("token", "create", "newsroom", "--replace", env=test_env).returncode == 0
    assert client.get("/api/v1/newsletters",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_tokens_are_stored_hashed(test_env, db):
    from sqlalchemy import select

    from app.auth.models import ApiToken

    token = missive("token", "create", "hashed", env=test_env).stdout.strip()
    stored = db.scalars(select(ApiToken.token_hash)).all()
    assert stored and token not in stored and all(len(h) == 64 for h in stored)


def test_user_create_and_its_errors(test_env, client):
    result = missive("user", "create", "Editor@Example.org", "--role", "viewer", env=test_env)
    assert result.returncode == 0, result.stderr
    assert "/admin/sign-in/" in result.stdout
    token = result.stdout.split("API token: ")[1].strip()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/newsletters", headers=headers).status_code == 200
    assert client.post("/api/v1/newsletters", headers=headers, json={}).status_code == 403
    assert "exists already" in _one_line_error(
        missive("user", "create", "editor@example.org", env=test_env))
    assert "invalid email" in _one_line_error(missive("user", "create", "nobody", env=test_env))
    assert "role must be" in _one_line_error(
        missive("token", "create", "x", "--role", "boss", env=test_env))


def test_refuses_to_start_without_a_secret_outside_the_embedded_default(test_env, tmp_path):
    env = {**test_env, "MISSIVE_SECRET_KEY": ""}
    for args in (("db", "upgrade"), ("token", "create", "x"), ("serve", "--port", "1")):
        assert "MISSIVE_SECRET_KEY" in _one_line_error(missive(*args, env=env, cwd=tmp_path))


def test_unreachable_database_is_one_line(test_env, tmp_path):
    env = {**test_env,
           "MISSIVE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"}
    assert "cannot use the database" in _one_line_error(
        missive("token", "create", "x", env=env, cwd=tmp_path))


def test_embedded_default_generates_its_secret_once(tmp_path):
    env = {k: "" for k in os.environ if k.startswith("MISSIVE_")}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MISSIVE_")}}
    clean = subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    key = (tmp_path / "var" / "secret_key").read_text()
    assert len(key) >= 40
    assert oct((tmp_path / "var" / "secret_key").stat().st_mode & 0o777) == "0o600"
    subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, cwd=tmp_path,
                   check=True, capture_output=True, timeout=60)
    assert (tmp_path / "var" / "secret_key").read_text() == key
