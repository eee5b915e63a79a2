"""SendGrid's signed Event Webhook: an ECDSA P-256 signature over the timestamp and the body."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.bounces.events import BounceEvent
from app.bounces.reasons import Verdict
from app.bounces.webhooks.common import (
    WebhookRefused,
    as_address,
    as_message_id,
    check_size,
    clean_text,
    first_status,
    fresh,
    load_json,
    lower_headers,
    object_items,
    smtp_code,
    unix_time,
    utf8,
    verdict,
)
from app.config import get_settings
from app.errors import Invalid

logger = logging.getLogger("app.bounces.webhooks")

@lru_cache(maxsize=4)
def _sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
    else:
        key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key

def sendgrid_events(body: bytes, headers: Mapping[str, str]) -> list[BounceEvent]:
    """Events in a SendGrid signed Event Webhook post.

    The ECDSA P-256 signature (header X-Twilio-Email-Event-Webhook-Signature) covers the
    timestamp header followed by the raw body; a timestamp more than ten minutes away is refused.
    Bounces, blocks, drops of a bounced address and spam reports give events; the rest none.
    """
    check_size(body)
    configured = get_settings().sendgrid_public_key
    if not configured:
        raise WebhookRefused("SendGrid webhooks are not configured (MISSIVE_SENDGRID_PUBLIC_KEY)")
    try:
        public_key = _sendgrid_key(configured)
    except (ValueError, UnsupportedAlgorithm) as exc:
        logger.error("MISSIVE_SENDGRID_PUBLIC_KEY is not a base64 DER ECDSA P-256 key: %s", exc)
        raise WebhookRefused("the SendGrid verification key is misconfigured") from exc
    lowered = lower_headers(headers)
    encoded = lowered.get("x-twilio-email-event-webhook-signature")
    timestamp = lowered.get("x-twilio-email-event-webhook-timestamp")
    if not encoded or not timestamp:
        raise WebhookRefused("the SendGrid signature headers are missing")
    if not fresh(timestamp):
        raise WebhookRefused("the SendGrid timestamp is not within ten minutes of now")
    try:
        signature = base64.b64decode(encoded, validate=True)
        public_key.verify(signature, utf8(timestamp) + body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature) as exc:
        raise WebhookRefused("the SendGrid signature does not verify") from exc
    payload = load_json(body)
    if not isinstance(payload, list):
        raise Invalid("a SendGrid Event Webhook post is a JSON array")
    return [event for item in object_items(payload) if (event := _sendgrid_event(item))]


def _sendgrid_event(item: dict[str, Any]) -> BounceEvent | None:
    name = clean_text(item.get("event"))
    words = clean_text(item.get("reason"))
    if name == "bounce":
        # SendGrid's "blocked" is a refusal of the sending IP or domain, "bounce" a refusal of
        # the address; the reply's own words and status come first all the same.
        blocked = clean_text(item.get("type")) == "blocked"
        code = smtp_code(words)
        found = verdict(status=first_status(item.get("status")), diagnostic=words,
                        temporary=True if blocked or (code and code < 500) else None,
                        fallback="blocked" if blocked else "userunknown")
    elif name == "dropped":
        # Only a drop for an address that bounced before says anything about the address.
        if words != "Bounced Address":
            return None
        found = Verdict(reason="userunknown", kind="hard", status=None)
    elif name == "spamreport":
        found = Verdict(reason="feedback", kind="complaint", status=None)
    else:
        return None
    return BounceEvent(
        kind=found.kind, recipient=as_address(item.get("email")), status=found.status,
        diagnostic=words or name, source="sendgrid",
        message_id=as_message_id(item.get("smtp-id")),
        occurred_at=unix_time(item.get("timestamp")), reason=found.reason,
    )
