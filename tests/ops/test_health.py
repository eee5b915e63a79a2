"""/healthz says the process answers; /readyz that the database, broker and Redis do."""

from __future__ import annotations

from app.config import get_settings
from tests.conftest import free_port


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_when_everything_answers(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready",
                        "checks": {"database": "ok", "broker": "ok", "redis": "ok"}}


def test_readyz_names_the_database_when_it_is_down(client, monkeypatch):
    closed = free_port()
    monkeypatch.setattr(get_settings(), "database_url",
                        f"postgresql+psycopg://postgres@127.0.0.1:{closed}/missive")
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["database"]
    assert body["checks"] == {"database": "unreachable", "broker": "ok", "redis": "ok"}
    assert "database" in body["detail"]
    assert str(closed) not in r.text  # where the servers are is for the log, not the world


def test_readyz_names_broker_and_redis(client, monkeypatch):
    closed = free_port()
    monkeypatch.setattr(get_settings(), "broker_url", f"redis://127.0.0.1:{closed}/0")
    monkeypatch.setattr(get_settings(), "redis_url", f"redis://127.0.0.1:{closed}/1")
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["failing"] == ["broker", "redis"]
    assert r.json()["checks"]["database"] == "ok"


def test_readyz_without_redis_configured(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "redis_url", "")
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"]["redis"] == "not configured"
