"""/metrics speaks Prometheus and counts what an operator watches (sends: tests/sending)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from app.config import get_settings


def _samples(client, **headers):
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def test_a_sign_up_is_counted(client, newsletter):
    before = _samples(client).get(("missive_signups_total", ()), 0)
    r = client.post("/subscribe/alliance-digest", json={"email": "counted@example.org"})
    assert r.status_code == 202
    assert _samples(client)[("missive_signups_total", ())] == before + 1


def test_the_families_are_there(client):
    names = {name for name, _ in _samples(client)}
    for wanted in ("missive_deliveries_total", "missive_smtp_reply_seconds_bucket",
                   "missive_sends_running", "missive_send_rows", "missive_queue_length",
                   "missive_bounce_events_total", "missive_signups_total"):
        assert wanted in names, wanted


def test_the_database_fallback_counts_too(client, newsletter, monkeypatch):
    monkeypatch.setattr(get_settings(), "redis_url", "")
    before = _samples(client).get(("missive_signups_total", ()), 0)
    r = client.post("/subscribe/alliance-digest", json={"email": "fallback@example.org"})
    assert r.status_code == 202
    assert _samples(client)[("missive_signups_total", ())] == before + 1


def test_metrics_token(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "metrics_token", "s3cret-scrape-token")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert _samples(client, Authorization="Bearer s3cret-scrape-token")
