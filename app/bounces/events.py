"""What every way a bounce or complaint comes in is turned into: one `BounceEvent`.

Parsers (DSN, ARF, flufl.bounce) and provider webhooks (SES, SendGrid, Postmark, Mailgun) only
produce events; `app.bounces.service` matches them to deliveries and applies the policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Kind = Literal["hard", "soft", "policy", "complaint", "delayed"]
KINDS: tuple[Kind, ...] = ("hard", "soft", "policy", "complaint", "delayed")

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class BounceEvent:
    kind: Kind
    # The address that failed or complained (a DSN's Final-Recipient, an ARF's original
    # recipient), normalised to lower case; None when the report does not say.
    recipient: str | None
    # RFC 3463 enhanced status code, e.g. "5.1.1"; None when there is none.
    status: str | None
    # The remote server's words (Diagnostic-Code, the SMTP reply, the provider's reason).
    diagnostic: str
    # Where it came from: "dsn", "arf", "flufl", "smtp", "ses", "sendgrid", "postmark", "mailgun".
    source: str
    # Envelope addresses the report was sent to (VERP candidates: To, Delivered-To,
    # X-Original-To, an SES mail.source …), checked later with `app.sending.verp`.
    verp_addresses: tuple[str, ...] = ()
    # The Message-ID of the original message when the report carries it (without brackets).
    message_id: str | None = None
    occurred_at: datetime | None = None


def status_code(text: str | None) -> str | None:
    """The first RFC 3463 code in `text` ("5.1.1"), or None."""
    if not text:
        return None
    match = _STATUS.search(text)
    return ".".join(match.groups()) if match else None


def classify(status: str | None, *, action: str | None = None, smtp_code: int | None = None
             ) -> Kind:
    """Kind of a failure from its status code (RFC 3463) and DSN action.

    `Action: delayed` is not a bounce. 5.7.x is a policy rejection of the sender (no reader is
    punished). 4.x.x and 5.2.2 (mailbox full) are soft. Other 5.x.x are hard. Without a status
    code the SMTP reply code decides (5xx hard, 4xx soft), and with neither it is soft.
    """
    if action and action.strip().lower() == "delayed":
        return "delayed"
    if status:
        klass, subject, detail = status.split(".")
        if klass == "4":
            return "soft"
        if klass == "5":
            if subject == "7":
                return "policy"
            if (subject, detail) == ("2", "2"):
                return "soft"
            return "hard"
        if klass == "2":
            return "delayed"
    if smtp_code is not None and 500 <= smtp_code < 600:
        return "hard"
    return "soft"
