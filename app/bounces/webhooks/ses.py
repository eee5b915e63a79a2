"""Amazon SES through SNS: the SNS signature checked, then SES's notification translated.

SNS messages carry an RSA signature checked against a certificate fetched from an SNS host
(cached per URL in this process). The translation (`notification_events`) is also used for
SES notifications that arrive by mail (an SNS e-mail subscription).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.bounces.events import BounceEvent
from app.bounces.reasons import Reason
from app.bounces.webhooks.common import (
    CERT_CACHE_SIZE,
    FETCH_MAX_BYTES,
    FETCH_TIMEOUT_SECONDS,
    WebhookRefused,
    as_address,
    as_message_id,
    as_object,
    clean_text,
    first_status,
    iso_time,
    load_json,
    object_items,
    utf8,
    verdict,
)
from app.config import Settings, get_settings
from app.errors import AppError, Invalid

logger = logging.getLogger("app.bounces.webhooks")

_SNS_HOST = r"sns\.[a-z]{2}(?:-[a-z]+)+-[0-9]+\.amazonaws\.com(?:\.cn)?"
_SNS_CERT_URL = re.compile(rf"https://{_SNS_HOST}/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*\.pem")
# Printable ASCII after the host's slash, without '#' or '\'.
_SNS_SUBSCRIBE_URL = re.compile(rf"https://{_SNS_HOST}/[\x21\x22\x24-\x5b\x5d-\x7e]*")

# The fields SNS signs, in the order it signs them ("Name\nvalue\n" each).
_SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}

_certificates: OrderedDict[str, x509.Certificate] = OrderedDict()
_certificates_lock = threading.Lock()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could leave the SNS host we checked: treat it as a failure."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def https_get(url: str) -> bytes:
    """GET an https URL with a short timeout and a size cap, following no redirect."""
    if not url.startswith("https://"):
        raise ValueError("only https URLs are fetched")
    opener = urllib.request.build_opener(_NoRedirect())
    with opener.open(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
        data: bytes = response.read(FETCH_MAX_BYTES + 1)
    if len(data) > FETCH_MAX_BYTES:
        raise ValueError(f"the response is larger than {FETCH_MAX_BYTES} bytes")
    return data


def ses_events(body: bytes, *, fetch_certificate: Callable[[str], bytes] | None = None
               ) -> list[BounceEvent]:
    """Events in an SNS message carrying an Amazon SES notification.

    Checked in order, the cheap ones first so that nothing is fetched for a stranger: the
    TopicArn is one of MISSIVE_SES_TOPIC_ARNS, the SigningCertURL is an https `.pem` on an SNS
    host, then the RSA signature against that certificate (valid now). `fetch_certificate` is
    the https GET used for the certificate and, with MISSIVE_SES_AUTO_CONFIRM, for a
    SubscriptionConfirmation's SubscribeURL. A confirmation, an unsubscribe confirmation and
    notifications other than bounces and complaints give no events.
    """
    message = load_json(body)
    if not isinstance(message, dict):
        raise Invalid("an SNS message is a JSON object")
    kind = message.get("Type")
    if not isinstance(kind, str) or kind not in _SNS_SIGNED_FIELDS:
        raise WebhookRefused("not an SNS message of a type that can be verified")
    settings = get_settings()
    allowed = {arn.strip() for arn in settings.ses_topic_arns.split(",") if arn.strip()}
    if not allowed:
        raise WebhookRefused("Amazon SES webhooks are not configured (MISSIVE_SES_TOPIC_ARNS)")
    topic = message.get("TopicArn")
    if not isinstance(topic, str) or topic not in allowed:
        raise WebhookRefused("this SNS topic is not one of MISSIVE_SES_TOPIC_ARNS")
    fetch = fetch_certificate or https_get
    _verify_sns(message, kind, fetch)
    if kind == "SubscriptionConfirmation":
        _confirm_subscription(message, topic, fetch, settings)
        return []
    if kind == "UnsubscribeConfirmation":
        logger.info("SNS topic %s unsubscribed this endpoint", topic)
        return []
    try:
        notification = json.loads(message["Message"])
    except (ValueError, RecursionError) as exc:
        raise Invalid("the SNS Message is not an Amazon SES notification (not JSON)") from exc
    if not isinstance(notification, dict):
        raise Invalid("the SNS Message is not an Amazon SES notification")
    return notification_events(notification)


def _verify_sns(message: dict[str, Any], kind: str, fetch: Callable[[str], bytes]) -> None:
    version = message.get("SignatureVersion")
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # noqa: S303 (what SNS SignatureVersion 1 is)
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise WebhookRefused("unknown SNS SignatureVersion")
    url = message.get("SigningCertURL")
    if not isinstance(url, str) or not _SNS_CERT_URL.fullmatch(url):
        raise WebhookRefused("the SigningCertURL is not an https .pem on an Amazon SNS host")
    encoded = message.get("Signature")
    if not isinstance(encoded, str):
        raise WebhookRefused("the SNS message is not signed")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise WebhookRefused("the SNS Signature is not base64") from exc
    signed = _sns_string_to_sign(message, kind)
    certificate = _sns_certificate(url, fetch)
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise WebhookRefused("the SNS signing certificate does not hold an RSA key")
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), algorithm)
    except InvalidSignature as exc:
        raise WebhookRefused("the SNS signature does not verify") from exc


def _sns_string_to_sign(message: dict[str, Any], kind: str) -> bytes:
    parts = []
    for name in _SNS_SIGNED_FIELDS[kind]:
        value = message.get(name)
        if name == "Subject" and value is None:
            continue  # a notification without a subject signs no Subject line
        if not isinstance(value, str):
            raise WebhookRefused(f"the SNS message has no {name} to verify")
        parts.append(f"{name}\n{value}\n")
    return utf8("".join(parts))


def _valid_now(certificate: x509.Certificate) -> bool:
    now = datetime.now(UTC)
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _sns_certificate(url: str, fetch: Callable[[str], bytes]) -> x509.Certificate:
    with _certificates_lock:
        cached = _certificates.get(url)
    if cached is not None and _valid_now(cached):
        return cached
    try:
        pem = fetch(url)
    except Exception as exc:  # a network boundary: whatever fails, SNS should retry later
        logger.warning("could not fetch the SNS signing certificate %s: %s", url, exc)
        raise AppError("could not fetch the SNS signing certificate; try again later",
                       503) from exc
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as exc:
        raise WebhookRefused("the SNS signing certificate cannot be read") from exc
    if not _valid_now(certificate):
        raise WebhookRefused("the SNS signing certificate is not valid now")
    with _certificates_lock:
        _certificates[url] = certificate
        _certificates.move_to_end(url)
        while len(_certificates) > CERT_CACHE_SIZE:
            _certificates.popitem(last=False)
    return certificate


def _confirm_subscription(message: dict[str, Any], topic: str, fetch: Callable[[str], bytes],
                          settings: Settings) -> None:
    url = message["SubscribeURL"]
    if not settings.ses_auto_confirm:
        logger.warning("SNS topic %s asks to subscribe this endpoint; to accept, open %s "
                       "(or set MISSIVE_SES_AUTO_CONFIRM)", topic, url)
        return
    if not _SNS_SUBSCRIBE_URL.fullmatch(url):
        raise WebhookRefused("the SubscribeURL is not on an Amazon SNS host")
    try:
        fetch(url)
    except Exception as exc:  # a network boundary: SNS retries a confirmation that failed
        logger.warning("could not confirm the SNS subscription to %s: %s", topic, exc)
        raise AppError("could not confirm the SNS subscription; try again later", 503) from exc
    logger.info("confirmed the SNS subscription to %s", topic)


def _ses_message_id(mail: dict[str, Any]) -> str | None:
    # The header as sent first: in event publishing, commonHeaders.messageId is SES's own id.
    for header in object_items(mail.get("headers")):
        name = header.get("name")
        if isinstance(name, str) and name.lower() == "message-id":
            found = as_message_id(header.get("value"))
            if found:
                return found
    return as_message_id(as_object(mail.get("commonHeaders")).get("messageId"))


# The reason each SES bounce subtype stands for when the remote server's words say nothing.
_SES_SUBTYPES: dict[tuple[str, str], Reason] = {
    ("Permanent", "General"): "userunknown", ("Permanent", "NoEmail"): "userunknown",
    ("Permanent", "Suppressed"): "userunknown",
    ("Permanent", "OnAccountSuppressionList"): "userunknown",
    ("Transient", "MailboxFull"): "mailboxfull", ("Transient", "MessageTooLarge"): "mesgtoobig",
    ("Transient", "ContentRejected"): "contenterror",
    ("Transient", "AttachmentRejected"): "contenterror",
}
# Not a failure of the address: the reader unsubscribed through SES's own header.
_SES_NOT_BOUNCES = {"UnsubscribedRecipient"}


def notification_events(notification: dict[str, Any]) -> list[BounceEvent]:
    """Events in one Amazon SES notification (already verified, or mailed to us and so to be
    matched to a delivery before it counts): bounces and complaints, nothing for the rest."""
    # Topic notifications say notificationType; configuration-set event publishing, eventType.
    kind = (clean_text(notification.get("notificationType"))
            or clean_text(notification.get("eventType")))
    mail = as_object(notification.get("mail"))
    source = as_address(mail.get("source"))
    verp_addresses = (source,) if source else ()
    message_id = _ses_message_id(mail)
    events = []
    if kind == "Bounce":
        bounce = as_object(notification.get("bounce"))
        bounce_type = clean_text(bounce.get("bounceType")) or "Undetermined"
        sub_type = clean_text(bounce.get("bounceSubType")) or "General"
        if sub_type in _SES_NOT_BOUNCES:
            return []
        fallback = f"Amazon SES: {bounce_type} bounce ({sub_type})"
        temporary = {"Permanent": False, "Transient": True}.get(bounce_type)
        occurred_at = iso_time(bounce.get("timestamp"))
        for recipient in object_items(bounce.get("bouncedRecipients")):
            diagnostic = clean_text(recipient.get("diagnosticCode"))
            found = verdict(status=first_status(recipient.get("status")), diagnostic=diagnostic,
                            temporary=temporary,
                            fallback=_SES_SUBTYPES.get((bounce_type, sub_type), "undefined"))
            events.append(BounceEvent(
                kind=found.kind, recipient=as_address(recipient.get("emailAddress")),
                status=found.status, diagnostic=diagnostic or fallback, source="ses",
                verp_addresses=verp_addresses, message_id=message_id, occurred_at=occurred_at,
                reason=found.reason,
            ))
    elif kind == "Complaint":
        complaint = as_object(notification.get("complaint"))
        feedback = clean_text(complaint.get("complaintFeedbackType"), 100)
        if feedback == "not-spam":
            return []
        occurred_at = iso_time(complaint.get("timestamp"))
        for recipient in object_items(complaint.get("complainedRecipients")):
            events.append(BounceEvent(
                kind="complaint", recipient=as_address(recipient.get("emailAddress")),
                status=None, diagnostic=f"complaint: {feedback}" if feedback else "complaint",
                source="ses", verp_addresses=verp_addresses, message_id=message_id,
                occurred_at=occurred_at, reason="feedback",
            ))
    return events
