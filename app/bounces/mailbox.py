"""Reading a bounce mailbox over IMAP, run by `missive beat`.

Each message is applied in its own transaction and deleted from the mailbox once that has
committed; what cannot be used (not a report, a forged VERP address) is moved to a folder for a
person to look at. A message read twice (a crash between commit and delete) changes nothing the
second time: the policy records a report once per delivery and kind.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
from dataclasses import dataclass, field
from typing import Any

from app.config import ConfigError, get_settings
from app.db import session_scope
from app.errors import AppError
from app.mail.transport import client_tls_context
from app.mail.urls import MailboxConfig as MailboxConfig  # the tests and beat import it here

log = logging.getLogger("missive.bounces.imap")

MAX_PER_ROUND = 500


@dataclass
class PollResult:
    processed: int = 0
    set_aside: int = 0
    reasons: list[str] = field(default_factory=list)


def _connect(config: MailboxConfig) -> imaplib.IMAP4:
    context = client_tls_context(config.verify)
    conn: imaplib.IMAP4
    if config.tls == "ssl":
        conn = imaplib.IMAP4_SSL(config.host, config.port, ssl_context=context,
                                 timeout=config.timeout)
    else:
        conn = imaplib.IMAP4(config.host, config.port, timeout=config.timeout)
        if config.tls == "starttls":
            conn.starttls(ssl_context=context)
    conn.login(config.username, config.password.get_secret_value())
    return conn


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def poll(config: MailboxConfig) -> PollResult:
    """Read the mailbox once; apply every report in it."""
    from app.bounces.service import ingest_message

    result = PollResult()
    conn = _connect(config)
    try:
        typ, _ = conn.select(_quote(config.folder))
        if typ != "OK":
            raise ConfigError(f"cannot open the IMAP folder {config.folder!r}")
        typ, data = conn.uid("SEARCH", "ALL")
        uids = data[0].split() if typ == "OK" and data and data[0] else []
        made_folder = False
        for uid in uids[:MAX_PER_ROUND]:
            typ, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = _message_bytes(fetched)
            if typ != "OK" or raw is None:
                continue
            try:
                with session_scope() as session:
                    ingest_message(session, raw)
            except AppError as exc:
                # Not ours to act on: keep it for a person, out of the way of the next round.
                if not made_folder:
                    conn.create(_quote(config.failed_folder))  # fails harmlessly if it exists
                    made_folder = True
                if conn.uid("COPY", uid, _quote(config.failed_folder))[0] != "OK":
                    log.error("cannot move message %s to %s", uid, config.failed_folder)
                    continue
                result.set_aside += 1
                result.reasons.append(str(exc.detail))
            else:
                result.processed += 1
            conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
        conn.expunge()
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            conn.logout()
    return result


def _message_bytes(fetched: list[Any]) -> bytes | None:
    for item in fetched or []:
        if isinstance(item, tuple) and len(item) >= 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def poll_configured() -> PollResult | None:
    """Poll MISSIVE_BOUNCE_IMAP_URL if it is set (called by `missive beat`)."""
    config = get_settings().bounce_imap
    return poll(config) if config else None
