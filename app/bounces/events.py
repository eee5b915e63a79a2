"""What every way a bounce or complaint comes in is turned into: one `BounceEvent`.

Parsers (DSN, ARF, flufl.bounce) and provider webhooks (SES, SendGrid, Postmark, Mailgun) only
produce events; `app.bounces.service` matches them to deliveries and applies the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.bounces.reasons import Kind, Reason, kind_of, reason_from_status, status_code

__all__ = ["KINDS", "BounceEvent", "Kind", "Reason", "classify", "status_code"]

KINDS: tuple[Kind, ...] = ("hard", "soft", "policy", "complaint", "delayed", "ignored")


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
    # Where it came from: "dsn", "arf", "flufl", "text", "ses", "smtp", "sendgrid", "postmark",
    # "mailgun".
    source: str
    # Envelope addresses the report was sent to (VERP candidates: To, Delivered-To,
    # X-Original-To, an SES mail.source …), checked later with `app.sending.verp`.
    verp_addresses: tuple[str, ...] = ()
    # The Message-ID of the original message when the report carries it (without brackets).
    message_id: str | None = None
    occurred_at: datetime | None = None
    # Why, in the vocabulary of app.bounces.reasons; the kind follows from it.
    reason: Reason = "undefined"


def classify(status: str | None, *, action: str | None = None, smtp_code: int | None = None
             ) -> Kind:
    """Kind of a failure from its status code and DSN action alone (no words to read).

    `Action: delayed` is not a bounce. The status's reason decides (5.1.1 hard, 5.2.2 soft,
    5.7.x a refusal of the sender); a 4.x.x code or a 4xx reply is never hard; with nothing
    to go on it is soft, so that a reader is only suppressed on evidence.
    """
    if action and action.strip().lower() == "delayed":
        return "delayed"
    reason = reason_from_status(status) or "undefined"
    if reason == "delivered":
        return "delayed"
    klass = status[0] if status else (str(smtp_code)[0] if smtp_code else None)
    return kind_of(reason, temporary=klass == "4")
