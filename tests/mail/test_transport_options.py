"""What the one-message SMTP transport (confirmation, welcome, test copies) says in MAIL FROM:
BODY=8BITMIME for 8-bit content, SMTPUTF8 for an internationalised address; and a
transactional mail with a non-ASCII name needs neither."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from app.mail import compose
from app.mail.transport import DeliveryError, SmtpConfig, SmtpTransport
from app.newsletters.models import Newsletter
from tests.conftest import free_port


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str], list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # SIZE= is smtplib's own, on every message.
        options = [o for o in envelope.mail_options if not o.startswith("SIZE=")]
        self.seen.append((envelope.mail_from, options,
                          list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def _server(smtputf8: bool) -> Iterator[tuple[SmtpTransport, Recorder]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port,
                            enable_SMTPUTF8=smtputf8)
    controller.start()
    transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, pool=1))
    yield transport, recorder
    transport.close()
    controller.stop()


@pytest.fixture
def utf8_server() -> Iterator[tuple[SmtpTransport, Recorder]]:
    yield from _server(True)


@pytest.fixture
def ascii_server() -> Iterator[tuple[SmtpTransport, Recorder]]:
    yield from _server(False)


def _newsletter() -> Newsletter:
    return Newsletter(slug="digest", name="Digest", from_name="Digest Desk",
                      from_email="digest@riverside-water.example.org", reply_to=None,
                      footer="", postal_address="")


def _welcome(name: str, address: str) -> bytes:
    return compose.build(
        template="welcome", newsletter=_newsletter(), to=compose.recipient(name, address),
        subject="Welcome to Digest", message_id="m1.abc@riverside-water.example.org",
        context={"subscriber": {"name": name}, "unsubscribe_url": "https://x.example/u/t",
                 "archive_url": "https://x.example/archive/digest"})


def test_a_non_ascii_name_needs_no_8bit(utf8_server):
    transport, recorder = utf8_server
    message = _welcome("Zoë Ñúñez", "zoe@example.org")
    assert message.isascii(), "quoted-printable and RFC 2047: 7-bit clean"
    assert b"Content-Transfer-Encoding: 8bit" not in message
    transport.send("bounces+m1-0123456789abcdef@news.example.org", ["zoe@example.org"], message)
    (mail_from, options, rcpts, content) = recorder.seen[0]
    assert options == [] and rcpts == ["zoe@example.org"]
    parsed = message_from_bytes(content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert "Welcome, Zoë Ñúñez!" in parsed.get_body(("plain",)).get_content()  # type: ignore
    assert parsed["To"].addresses[0].display_name == "Zoë Ñúñez"


def test_8bit_content_is_announced(utf8_server):
    transport, recorder = utf8_server
    message = "Subject: caf\u00e9\r\n\r\nUn caf\u00e9, s'il vous pla\u00eet.\r\n".encode()
    transport.send("bounces@news.example.org", ["reader@example.org"], message)
    assert recorder.seen[0][1] == ["BODY=8BITMIME"]


def test_an_internationalised_address_asks_for_smtputf8(utf8_server):
    transport, recorder = utf8_server
    message = _welcome("Zoë", "zoë@exämple.org")
    assert "To: Zoë <zoë@xn--exmple-cua.org>".encode() in message  # RFC 6532, IDNA domain
    transport.send("bounces@news.example.org", ["zoë@xn--exmple-cua.org"], message)
    (_, options, rcpts, _) = recorder.seen[0]
    assert "SMTPUTF8" in options and "BODY=8BITMIME" in options
    assert rcpts == ["zoë@xn--exmple-cua.org"]


def test_a_server_without_smtputf8_refuses_such_an_address_for_good(ascii_server):
    transport, recorder = ascii_server
    with pytest.raises(DeliveryError) as refused:
        transport.send("bounces@news.example.org", ["zoë@example.org"], b"Subject: x\r\n\r\nx")
    assert refused.value.code == 553 and not refused.value.temporary
    assert "SMTPUTF8" in refused.value.message
    # The connection is still good for the next message.
    transport.send("bounces@news.example.org", ["zoe@example.org"], b"Subject: x\r\n\r\nx\r\n")
    assert [rcpts for _, _, rcpts, _ in recorder.seen] == [["zoe@example.org"]]
