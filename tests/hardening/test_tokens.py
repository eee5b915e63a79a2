"""API tokens can be listed and revoked, from the command line and (admins only) the API."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select

from app.auth.models import ApiToken
from tests.conftest import ROOT


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "token", *args],
                          env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_list_and_revoke(client, test_env):
    made = _cli(test_env, "create", "ci-bot")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/subscribers", headers=headers).status_code == 200

    listed = _cli(test_env, "list")
    assert listed.returncode == 0, listed.stderr
    [line] = [t for t in listed.stdout.splitlines() if "\tci-bot\t" in t]
    assert "\teditor\t" in line and "last used 20" in line
    assert secret not in listed.stdout

    revoked = _cli(test_env, "revoke", "ci-bot")
    assert revoked.returncode == 0 and "revoked 1 token named ci-bot" in revoked.stdout
    r = client.get("/api/v1/subscribers", headers=headers)
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked token"
    assert "ci-bot" not in _cli(test_env, "list").stdout
    assert "revoked" in _cli(test_env, "list", "--all").stdout

    again = _cli(test_env, "revoke", "ci-bot")
    assert again.returncode != 0
    assert again.stderr.strip().count("\n") == 0 and "no live token" in again.stderr


def test_api_tokens_are_for_admins(client, auth, viewer_token, db):
    from app.auth import service

    editor = service.create_token(db, name="editor", role="editor")
    db.commit()
    for headers in ({"Authorization": f"Bearer {editor}"},
                    {"Authorization": f"Bearer {viewer_token}"}):
        assert client.get("/api/v1/tokens", headers=headers).status_code == 403
        assert client.post("/api/v1/tokens", headers=headers,
                           json={"name": "x"}).status_code == 403
    assert client.get("/api/v1/tokens").status_code == 401

    made = client.post("/api/v1/tokens", headers=auth, json={"name": "robot", "role": "viewer"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["token"].startswith("msv_") and body["role"] == "viewer"
    robot = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/v1/subscribers", headers=robot).status_code == 200

    listed = client.get("/api/v1/tokens", headers=auth).json()
    assert {t["name"] for t in listed} >= {"tests", "editor", "robot"}
    assert all("token" not in t and "token_hash" not in t for t in listed)

    assert client.delete(f"/api/v1/tokens/{body['id']}", headers=auth).status_code == 204
    assert client.get("/api/v1/subscribers", headers=robot).status_code == 401
    assert client.delete(f"/api/v1/tokens/{body['id']}", headers=auth).status_code == 404
    assert "robot" in {t["name"] for t in client.get(
        "/api/v1/tokens?include_revoked=true", headers=auth).json()}


def test_last_use_is_recorded_at_most_once_a_minute(client, auth, token, db):
    from datetime import timedelta

    client.get("/api/v1/subscribers", headers=auth)
    row = db.scalars(select(ApiToken).where(ApiToken.name == "tests")).one()
    first = row.last_used_at
    assert first is not None
    client.get("/api/v1/subscribers", headers=auth)
    db.expire_all()
    assert db.get(ApiToken, row.id).last_used_at == first
    db.get(ApiToken, row.id).last_used_at = first - timedelta(minutes=2)
    db.commit()
    client.get("/api/v1/subscribers", headers=auth)
    db.expire_all()
    assert db.get(ApiToken, row.id).last_used_at > first
