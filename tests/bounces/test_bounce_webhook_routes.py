"""Provider webhooks over HTTP: an authentic event acts on the reader, a forged or replayed
one is refused and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from app.bounces.parse import MAX_MESSAGE_BYTES
from app.config import get_settings
from app.sending.models import Delivery, Send
from app.subscribers.models import Subscription, Suppression
from tests.bounces.test_bounce_parsing import HOSTILE
from tests.sending.conftest import add_readers

MAILGUN_KEY = "key-" + "3" * 32


@pytest.fixture
def reader(issue, db):
    [address] = add_readers(1)
    sub = db.scalars(select(Subscription)).one()
    send = Send(issue_id=issue, status="done", total=1)
    db.add(send)
    db.flush()
    delivery = Delivery(send_id=send.id, subscriber_id=sub.subscriber_id,
                        subscription_id=sub.id, status="sent")
    db.add(delivery)
    db.commit()
    return address


def _suppressed(db) -> list[str]:
    db.expire_all()
    return list(db.scalars(select(Suppression.reason)))


def _mailgun(event: dict, *, token: str | None = None, key: str = MAILGUN_KEY) -> bytes:
    timestamp = str(int(time.time()))
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": timestamp, "token": token,
                                     "signature": signature},
                       "event-data": event}).encode()


def test_mailgun_complaint_then_replay(client, reader, db, monkeypatch):
    monkeypatch.setattr(get_settings(), "mailgun_signing_key", SecretStr(MAILGUN_KEY))
    event = {"event": "complained", "recipient": reader, "timestamp": time.time(),
             "message": {"headers": {"message-id": "x@example.org"}}}
    token = secrets.token_hex(25)
    r = client.post("/webhooks/mailgun", content=_mailgun(event, token=token),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["actions"] == ["unsubscribed"]
    assert _suppressed(db) == ["complained"]
    db.execute(Suppression.__table__.delete())
    db.commit()
    replay = client.post("/webhooks/mailgun", content=_mailgun(event, token=token),
                         headers={"content-type": "application/json"})
    assert replay.status_code == 401
    assert _suppressed(db) == []


def test_mailgun_forged_signature_changes_nothing(client, reader, db, monkeypatch):
    monkeypatch.setattr(get_settings(), "mailgun_signing_key", SecretStr(MAILGUN_KEY))
    event = {"event": "failed", "severity": "permanent", "recipient": reader,
             "delivery-status": {"code": 550, "message": "5.1.1 no such user"}}
    r = client.post("/webhooks/mailgun", content=_mailgun(event, key="key-" + "9" * 32))
    assert r.status_code == 401
    assert _suppressed(db) == []


def test_postmark_needs_its_credentials(client, reader, db, monkeypatch):
    monkeypatch.setattr(get_settings(), "postmark_user", "pm")
    monkeypatch.setattr(get_settings(), "postmark_password", SecretStr("pw"))
    body = json.dumps({"RecordType": "Bounce", "Type": "HardBounce", "Email": reader,
                       "Details": "smtp;550 5.1.1 unknown user",
                       "BouncedAt": "2026-11-26T08:00:00Z"}).encode()
    assert client.post("/webhooks/postmark", content=body).status_code == 401
    wrong = "Basic " + base64.b64encode(b"pm:nope").decode()
    assert client.post("/webhooks/postmark", content=body,
                       headers={"authorization": wrong}).status_code == 401
    assert _suppressed(db) == []
    right = "Basic " + base64.b64encode(b"pm:pw").decode()
    r = client.post("/webhooks/postmark", content=body, headers={"authorization": right})
    assert r.status_code == 200 and r.json()["actions"] == ["suppressed"]
    assert _suppressed(db) == ["bounced"]


@pytest.mark.parametrize("path", ["/webhooks/ses", "/webhooks/sendgrid", "/webhooks/postmark",
                                  "/webhooks/mailgun", "/api/v1/bounces"])
def test_garbage_and_huge_bodies_are_4xx(client, auth, path, monkeypatch):
    monkeypatch.setattr(get_settings(), "mailgun_signing_key", SecretStr(MAILGUN_KEY))
    for body in (b"", b"\x00\xff garbage {", b"[]"):
        r = client.post(path, content=body, headers=auth)
        assert 400 <= r.status_code < 500, (path, body, r.status_code)
    huge = client.post(path, content=b"x" * (11 * 1024 * 1024), headers=auth)
    assert huge.status_code == 413


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.eml")))
def test_every_family_unproven_is_a_clear_422(client, auth, db, name):
    # The fixtures' VERP macs are made up: each report is read, proves nothing, changes nothing.
    r = client.post("/api/v1/bounces", headers=auth, content=(FIXTURES / name).read_bytes())
    if name in ("postfix_delayed.eml", "exim_delay_warning_text.eml"):
        # A delay is no bounce: set aside before any matching, whoever it names.
        assert r.status_code == 200 and r.json()["recorded"] == 0, r.text
    else:
        assert r.status_code == 422, r.text
        assert r.json()["detail"]
    assert _suppressed(db) == []


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_reports_are_a_clear_4xx(client, auth, db, name):
    r = client.post("/api/v1/bounces", headers=auth, content=HOSTILE[name][:MAX_MESSAGE_BYTES])
    assert 400 <= r.status_code < 500, r.text
    assert _suppressed(db) == []
