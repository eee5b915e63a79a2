"""Mail transports behind one small interface: `send(envelope_from, to, message_bytes)`.

`MISSIVE_MAIL_URL` picks one: `smtp://user:pass@host:port?tls=starttls|ssl|none&pool=N` (a pool of
persistent connections) or `maildir:///path` (each message a file, for the embedded default).
"""

from __future__ import annotations

import contextlib
import mailbox
import queue
import smtplib
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from app.mail.urls import MaildirConfig, parse_mail_url
from app.mail.urls import SmtpConfig as SmtpConfig  # where the pool and pipeline import it


def client_tls_context(verify: bool) -> ssl.SSLContext:
    """A TLS context for talking to a mail server; `verify=False` only for a self-signed one."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class DeliveryError(Exception):
    """The server refused a message. `code` is the SMTP reply code (0 when there was none)."""

    def __init__(self, code: int, message: str, *, temporary: bool,
                 recipients: Sequence[str] = ()) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.temporary = temporary
        # The addresses the refusal is about; empty when it is about the session or the
        # sender (a wrong password, a refused MAIL FROM): no reader's fault then.
        self.recipients = tuple(recipients)


class Transport(Protocol):
    def send(self, envelope_from: str, to: Sequence[str], message: bytes) -> None: ...

    def close(self) -> None: ...


class MaildirTransport:
    """Drops each message into a Maildir, where any mail reader can open it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._box = mailbox.Maildir(str(path), create=True)

    def send(self, envelope_from: str, to: Sequence[str], message: bytes) -> None:
        # Maildir has no envelope; keep it as the first header, as a local MTA would.
        recipients = ", ".join(to)
        head = f"Return-Path: <{envelope_from}>\r\nDelivered-To: {recipients}\r\n".encode()
        self._box.add(head + message)

    def close(self) -> None:
        self._box.close()


class SmtpTransport:
    """A pool of persistent SMTP connections shared by the threads of one process.

    A connection is taken for one message and put back; broken ones are dropped and the
    message is retried once on a fresh connection, since a server may close an idle session.
    """

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(config.pool)

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        context = client_tls_context(c.verify)
        conn: smtplib.SMTP
        if c.tls == "ssl":
            conn = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=context)
        else:
            conn = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        conn.ehlo_or_helo_if_needed()
        if c.tls == "starttls":
            conn.starttls(context=context)
            conn.ehlo()
        if c.username:
            conn.login(c.username, c.password.get_secret_value() if c.password else "")
        return conn

    def send(self, envelope_from: str, to: Sequence[str], message: bytes) -> None:
        with self._slots:
            for attempt in (1, 2):
                try:
                    conn = self._idle.get_nowait()
                except queue.Empty:
                    try:
                        conn = self._connect()
                    except smtplib.SMTPResponseException as exc:
                        raise DeliveryError(exc.smtp_code, _text(exc.smtp_error),
                                            temporary=exc.smtp_code < 500) from exc
                    except (OSError, smtplib.SMTPException) as exc:
                        raise DeliveryError(0, f"cannot connect: {exc}", temporary=True) from exc
                try:
                    options = _mail_options(conn, envelope_from, to, message)
                except DeliveryError:
                    self._idle.put(conn)
                    raise
                try:
                    refused = conn.sendmail(envelope_from, list(to), message, options)
                except smtplib.SMTPServerDisconnected:
                    if attempt == 2:
                        raise DeliveryError(0, "server disconnected", temporary=True) from None
                    continue
                except smtplib.SMTPRecipientsRefused as exc:
                    self._idle.put(conn)
                    address, (code, text) = next(iter(exc.recipients.items()))
                    raise DeliveryError(code, _text(text), temporary=400 <= code < 500,
                                        recipients=[address]) from exc
                except smtplib.SMTPResponseException as exc:
                    self._reset_or_drop(conn)
                    # A refusal after DATA is about this message (some servers check the
                    # recipient only then); one of MAIL FROM is about the sender.
                    about = [] if isinstance(exc, smtplib.SMTPSenderRefused) else list(to)
                    raise DeliveryError(
                        exc.smtp_code, _text(exc.smtp_error), temporary=400 <= exc.smtp_code < 500,
                        recipients=about,
                    ) from exc
                except (OSError, smtplib.SMTPException) as exc:
                    _quietly_close(conn)
                    raise DeliveryError(0, str(exc), temporary=True) from exc
                self._idle.put(conn)
                if refused:
                    address, (code, text) = next(iter(refused.items()))
                    raise DeliveryError(code, _text(text), temporary=400 <= code < 500,
                                        recipients=[address])
                return

    def _reset_or_drop(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            _quietly_close(conn)
        else:
            self._idle.put(conn)

    def close(self) -> None:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                _quietly_close(conn)


def _mail_options(conn: smtplib.SMTP, envelope_from: str, to: Sequence[str],
                  message: bytes) -> list[str]:
    """MAIL FROM parameters: SMTPUTF8 for an internationalised address (refused when the server
    lacks it), BODY=8BITMIME for 8-bit content when the server offers it."""
    options = []
    if not all(address.isascii() for address in (envelope_from, *to)):
        if not conn.has_extn("smtputf8"):
            raise DeliveryError(553, "5.6.7 non-ASCII address and the server has no SMTPUTF8",
                                temporary=False)
        options.append("SMTPUTF8")
    if not message.isascii() and conn.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    return options


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _quietly_close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def from_url(url: str | SecretStr) -> Transport:
    """The transport `url` describes, or ConfigError saying what is wrong with it."""
    config = parse_mail_url(url)
    if isinstance(config, MaildirConfig):
        return MaildirTransport(config.path)
    return SmtpTransport(config)
