"""The one way out: the last step of every message Missive sends.

Issue copies (from the send engine) and the transactional mails (confirmation, welcome, test
copies) all leave through here, so they all get the same things: a VERP envelope sender tied to
a stored record (the send ledger's delivery row, or a `messages` row for the rest), the
standard headers, and the DKIM signature when MISSIVE_DKIM_* is set. A bounce or complaint
about any of them can therefore be matched (by VERP address or Message-ID) and applied.
"""

from __future__ import annotations

import logging
import secrets
from email.utils import formataddr

from sqlalchemy.orm import Session

from app.db import utcnow
from app.mail import signing, verp
from app.mail.models import OutboundMessage
from app.mail.pipeline import Outgoing
from app.mail.transport import DeliveryError, Transport

log = logging.getLogger("missive.mail")

TRANSACTIONAL = ("confirmation", "welcome")
SENDER_ID = "missive"


def list_id(name: str, slug: str, domain: str) -> str:
    """The List-Id of a newsletter (RFC 2919): the same on every mail it sends."""
    return formataddr((name, f"{slug}.{domain}"))


def feedback_id(campaign: str, slug: str, mail_type: str) -> str:
    """A Feedback-ID (Gmail's Postmaster Tools groups complaints by it): campaign, customer,
    mail type, sender. Never personal."""
    return f"{campaign}:{slug}:{mail_type}:{SENDER_ID}"


def standard_headers(*, kind: str, name: str, slug: str, domain: str,
                     campaign: str) -> dict[str, str]:
    """The headers every mail of `kind` carries besides From/To/Subject/Date/Message-ID:
    List-Id and Feedback-ID always, Auto-Submitted on the mails a machine sends by itself."""
    headers = {"List-Id": list_id(name, slug, domain),
               "Feedback-ID": feedback_id(campaign, slug, kind)}
    if kind in TRANSACTIONAL:
        headers["Auto-Submitted"] = "auto-generated"
    return headers


def issue_copy(*, delivery_id: int, recipient: str, message: bytes,
               body_hash: bytes | None = None) -> Outgoing:
    """One reader's copy of an issue, ready for SMTP: VERP sender of its delivery, signed."""
    return Outgoing(key=delivery_id, envelope_from=verp.envelope_sender(delivery_id),
                    recipient=recipient,
                    message=signing.sign(message, body_hash=body_hash))


def record(session: Session, *, kind: str, email: str, email_key: str, domain: str,
           newsletter_id: int | None = None, subscriber_id: int | None = None,
           subscription_id: int | None = None, issue_id: int | None = None) -> OutboundMessage:
    """Store a transactional message about to be sent, with its Message-ID (random, so a
    report quoting it proves it saw the message)."""
    row = OutboundMessage(kind=kind, email=email, email_key=email_key,
                          newsletter_id=newsletter_id, subscriber_id=subscriber_id,
                          subscription_id=subscription_id, issue_id=issue_id)
    session.add(row)
    session.flush()
    row.message_id = f"m{row.id}.{secrets.token_hex(8)}@{domain}"
    return row


def send(session: Session, row: OutboundMessage, message: bytes, transport: Transport) -> bool:
    """Sign `message` and send it from the row's VERP address; True if the server took it.

    A temporary failure raises DeliveryError (the task retries, the row rolls back with it).
    A permanent refusal is a bounce at our door: recorded on the row and handed to the bounce
    policy, like a refused issue copy.
    """
    try:
        transport.send(verp.message_sender(row.id), [row.email], signing.sign(message))
    except DeliveryError as exc:
        if exc.temporary or not exc.recipients:
            # Not this address's fault (a refused login or sender) or not final: the caller
            # decides (app/mail/transactional.py logs a configuration error, or retries).
            raise
        row.smtp_code, row.smtp_reply = exc.code, exc.message[:1000]
        log.warning("%s mail %s refused: %s %s", row.kind, row.id, exc.code, exc.message)
        from app.bounces.service import record_message_failure

        record_message_failure(session, row, exc.code, exc.message)
        return False
    row.sent_at, row.smtp_code = utcnow(), 250
    return True
