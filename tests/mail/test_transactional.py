"""One address, one fate: how a transactional task sorts what the SMTP server answered."""

from __future__ import annotations

import logging

from sqlalchemy import select

from app.bounces.models import BounceRecord
from app.mail import transactional
from app.mail.transport import from_url
from app.subscribers.models import Suppression


def _deliver_to(port: int):
    transport = from_url(f"smtp://127.0.0.1:{port}?pool=1")

    def deliver(session, address: str) -> bool:
        transport.send("bounces@news.example.org", [address],
                       f"From: news@example.org\r\nTo: {address}\r\nSubject: hi\r\n\r\nhi\r\n"
                       .encode())
        return True

    return deliver


def test_refused_deferred_and_sent_each_keep_their_own_fate(smtp_server, inbox, db):
    port, _ = smtp_server
    inbox.reject["gone@example.org"] = "550 5.1.1 no such user"
    inbox.reject["busy@example.org"] = "451 4.3.0 try again later"
    addresses = ["first@example.org", "gone@example.org", "busy@example.org",
                 "last@example.org"]
    retry = transactional.deliver_each("test", addresses, _deliver_to(port))
    assert retry == ["busy@example.org"]
    assert inbox.to("first@example.org") and inbox.to("last@example.org")
    assert not inbox.to("gone@example.org") and not inbox.to("busy@example.org")
    assert db.scalar(select(Suppression.reason).where(
        Suppression.email_key == "gone@example.org")) == "bounced"
    assert db.scalar(select(Suppression.id).where(
        Suppression.email_key == "busy@example.org")) is None
    kinds = db.execute(select(BounceRecord.email_key, BounceRecord.kind)).all()
    assert [tuple(k) for k in kinds] == [("gone@example.org", "hard")]


def test_no_server_defers_everything_at_once(db):
    from tests.conftest import free_port

    calls = []
    deliver = _deliver_to(free_port())

    def counting(session, address):
        calls.append(address)
        return deliver(session, address)

    assert transactional.deliver_each("test", ["a@example.org", "b@example.org"],
                                      counting) == ["a@example.org", "b@example.org"]
    assert calls == ["a@example.org"]  # the second did not wait for the same dead server


def test_a_configuration_error_is_logged_and_not_retried(caplog, db):
    def deliver(session, address):
        from_url("smtp://:25")  # no host: ConfigError

    with caplog.at_level(logging.ERROR, logger="missive.mail"):
        assert transactional.deliver_each("confirmation", ["a@example.org"], deliver) == []
    assert any("cannot send confirmation mails" in r.getMessage()
               and "MISSIVE_MAIL_URL" in r.getMessage() and "Not retried" in r.getMessage()
               for r in caplog.records)
    assert db.scalar(select(BounceRecord.id)) is None
