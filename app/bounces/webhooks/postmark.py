"""Postmark's bounce and spam-complaint webhooks, behind HTTP Basic credentials."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from typing import Any

from app.bounces.events import BounceEvent
from app.bounces.reasons import Reason, Verdict
from app.bounces.webhooks.common import (
    WebhookRefused,
    as_address,
    as_message_id,
    as_object,
    check_size,
    clean_text,
    first_status,
    iso_time,
    load_json,
    lower_headers,
    utf8,
    verdict,
)
from app.config import get_settings
from app.errors import Invalid

# Postmark's bounce types: the reason each stands for when the reply's words say nothing, and
# whether Postmark calls it temporary.
_POSTMARK_TYPES: dict[str, tuple[Reason, bool | None]] = {
    "HardBounce": ("userunknown", False), "BadEmailAddress": ("userunknown", False),
    "SoftBounce": ("undefined", True), "Transient": ("undefined", True),
    "DnsError": ("networkerror", True), "Blocked": ("blocked", None),
    "DMARCPolicy": ("authfailure", None), "SpamNotification": ("spamdetected", None),
    "VirusNotification": ("virusdetected", None),
}
# Not failures of the address: replies, sign-up noise, Postmark's own states and errors.
_POSTMARK_IGNORED = {
    "Subscribe", "Unsubscribe", "AutoResponder", "AddressChange", "ChallengeVerification",
    "OpenRelayTest", "ManuallyDeactivated", "Unconfirmed", "SMTPApiError", "InboundError",
    "TemplateRenderingFailed",
}


def _basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


def postmark_events(body: bytes, headers: Mapping[str, str]) -> list[BounceEvent]:
    """Events in a Postmark bounce or spam-complaint webhook, after its HTTP Basic credentials.

    Postmark does not give the original Message-ID; it is taken from `Metadata.message_id` when
    the message was sent with that metadata.
    """
    check_size(body)
    settings = get_settings()
    if not settings.postmark_user or not settings.postmark_password.get_secret_value():
        raise WebhookRefused("Postmark webhooks are not configured (MISSIVE_POSTMARK_USER and "
                             "MISSIVE_POSTMARK_PASSWORD)")
    given = _basic_credentials(lower_headers(headers).get("authorization"))
    user, password = given if given else (b"", b"")
    # Both compared, always, so the time taken does not tell which one was wrong.
    user_ok = hmac.compare_digest(user, utf8(settings.postmark_user))
    password_ok = hmac.compare_digest(password,
                                      utf8(settings.postmark_password.get_secret_value()))
    if not (given and user_ok and password_ok):
        raise WebhookRefused("the Postmark credentials are missing or wrong")
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise Invalid("a Postmark webhook post is a JSON object")
    event = _postmark_event(payload)
    return [event] if event else []


def _postmark_event(payload: dict[str, Any]) -> BounceEvent | None:
    record = clean_text(payload.get("RecordType"))
    bounce_type = clean_text(payload.get("Type")) or ""
    details = clean_text(payload.get("Details"))
    description = clean_text(payload.get("Description"))
    if record == "SpamComplaint" or (record == "Bounce" and bounce_type == "SpamComplaint"):
        found = Verdict(reason="feedback", kind="complaint", status=None)
    elif record != "Bounce" or bounce_type in _POSTMARK_IGNORED:
        return None
    else:
        fallback, temporary = _POSTMARK_TYPES.get(bounce_type, ("undefined", None))
        found = verdict(status=first_status(description), diagnostic=details,
                        temporary=temporary, fallback=fallback)
    return BounceEvent(
        kind=found.kind, recipient=as_address(payload.get("Email")), status=found.status,
        diagnostic=details or description or bounce_type or "bounce", source="postmark",
        message_id=as_message_id(as_object(payload.get("Metadata")).get("message_id")),
        occurred_at=iso_time(payload.get("BouncedAt")), reason=found.reason,
    )
