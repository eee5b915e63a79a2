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


def test_maildir_batches_are_counted(client, tmp_path):
    from app.mail.pipeline import Outgoing
    from app.mail.transport import MaildirTransport
    from app.ops.metrics import CountedSender
    from app.sending.engine import TransportBatcher

    sender = CountedSender(TransportBatcher(MaildirTransport(tmp_path / "outbox")))
    before = _samples(client).get(("missive_deliveries_total", (("outcome", "sent"),)), 0)
    message = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    outcomes = sender.send_many([Outgoing(key=i, envelope_from="bounces@example.org",
                                          recipient=f"r{i}@example.org", message=message)
                                 for i in range(3)])
    assert [o.sent for o in outcomes] == [True, True, True]
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 3
    after = _samples(client)[("missive_deliveries_total", (("outcome", "sent"),))]
    assert after == before + 3
