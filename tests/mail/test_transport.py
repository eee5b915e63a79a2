"""Mail transports against a real SMTP server: pooling, STARTTLS, AUTH, refusals, Maildir."""

from __future__ import annotations

import mailbox
import ssl
import subprocess
import threading
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from app.config import ConfigError
from app.mail.transport import DeliveryError, MaildirTransport, SmtpTransport, from_url
from tests.conftest import free_port

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n"


class Recorder:
    def __init__(self) -> None:
        self.sessions: set[int] = set()
        self.received: list[tuple[str, list[str], bytes]] = []
        self.reply_for: dict[str, str] = {}
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: Any) -> str:
        if address in self.reply_for:
            return self.reply_for[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.sessions.add(id(session))
            self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


@pytest.fixture
def server():
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, recorder
    controller.stop()


def test_pool_reuses_connections_across_messages(server):
    port, rec = server
    transport = from_url(f"smtp://127.0.0.1:{port}?pool=2")
    threads = [
        threading.Thread(target=lambda: [transport.send("bounce@example.org", ["b@example.org"],
                                                        MESSAGE) for _ in range(10)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    transport.close()
    assert len(rec.received) == 40
    assert len(rec.sessions) <= 2  # four threads shared two persistent connections
    mail_from, rcpts, data = rec.received[0]
    assert mail_from == "bounce@example.org" and rcpts == ["b@example.org"]
    assert b"\r\n.leading dot\r\n" in data.replace(b"\n", b"\r\n").replace(b"\r\r", b"\r")


def test_refusals_carry_the_server_reply(server):
    port, rec = server
    rec.reply_for["gone@example.org"] = "550 5.1.1 no such user"
    rec.reply_for["later@example.org"] = "451 4.3.0 try again later"
    transport = from_url(f"smtp://127.0.0.1:{port}")
    with pytest.raises(DeliveryError) as hard:
        transport.send("x@example.org", ["gone@example.org"], MESSAGE)
    assert hard.value.code == 550 and not hard.value.temporary
    assert "no such user" in hard.value.message
    with pytest.raises(DeliveryError) as soft:
        transport.send("x@example.org", ["later@example.org"], MESSAGE)
    assert soft.value.code == 451 and soft.value.temporary
    # The connection is still good for the next reader.
    transport.send("x@example.org", ["fine@example.org"], MESSAGE)
    assert [r[1] for r in rec.received] == [["fine@example.org"]]


def test_server_down_is_a_temporary_failure():
    transport = from_url(f"smtp://127.0.0.1:{free_port()}")
    with pytest.raises(DeliveryError) as exc:
        transport.send("x@example.org", ["b@example.org"], MESSAGE)
    assert exc.value.temporary and exc.value.code == 0


@pytest.fixture
def tls_server(tmp_path: Path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))

    def check(mechanism: str, login: bytes, password: bytes) -> bool:
        return login == b"editor" and password == b"s3cret pass"

    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, auth_callback=check,
                            auth_required=True, auth_require_tls=True,
                            auth_exclude_mechanism=["LOGIN"])
    controller.start()
    yield port, recorder
    controller.stop()


def test_starttls_and_auth(tls_server):
    port, rec = tls_server
    good = from_url(f"smtp://editor:s3cret%20pass@127.0.0.1:{port}?tls=starttls&verify=0")
    good.send("x@example.org", ["b@example.org"], MESSAGE)
    assert len(rec.received) == 1
    bad = from_url(f"smtp://editor:wrong@127.0.0.1:{port}?tls=starttls&verify=0")
    with pytest.raises(DeliveryError):
        bad.send("x@example.org", ["b@example.org"], MESSAGE)
    # Certificate checking is on by default: a self-signed server is refused.
    strict = from_url(f"smtp://editor:s3cret%20pass@127.0.0.1:{port}?tls=starttls")
    with pytest.raises(DeliveryError):
        strict.send("x@example.org", ["b@example.org"], MESSAGE)
    assert len(rec.received) == 1


def test_maildir_transport(tmp_path: Path):
    transport = from_url(f"maildir://{tmp_path / 'outbox'}")
    assert isinstance(transport, MaildirTransport)
    transport.send("bounce@example.org", ["b@example.org"], MESSAGE)
    [msg] = list(mailbox.Maildir(str(tmp_path / "outbox"), create=False))
    assert msg["Subject"] == "hi" and msg["Return-Path"] == "<bounce@example.org>"
    assert message_from_bytes(bytes(msg))["To"] == "b@example.org"


@pytest.mark.parametrize("url", ["ftp://x", "smtp://127.0.0.1?tls=maybe", "smtp://?pool=2",
                                 "smtp://h:25?pool=0", "maildir://", "smtp://h:notaport"])
def test_bad_mail_urls_say_what_is_wrong(url):
    with pytest.raises(ConfigError) as exc:
        from_url(url)
    assert "MISSIVE_MAIL_URL" in str(exc.value)


def test_smtp_transport_is_the_pool_type(server):
    port, _ = server
    assert isinstance(from_url(f"smtp://127.0.0.1:{port}?pool=3"), SmtpTransport)
