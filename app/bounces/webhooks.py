"""Provider webhooks: prove a bounce or complaint comes from the provider, then translate it.

One function per provider takes the raw body (and headers) and returns `BounceEvent`s, or
raises `WebhookRefused` (401: authenticity not shown) or `Invalid` (422: malformed). Amazon SES
posts through SNS, whose messages carry an RSA signature checked against a certificate fetched
from an SNS host; SendGrid signs with ECDSA; Postmark uses HTTP Basic credentials; Mailgun an
HMAC of a timestamp and a one-time token. Two stores: SNS certificates cached per URL in this
process, and Mailgun tokens already seen (Redis, else the database).

Everything in a payload is untrusted: fields of the wrong type are treated as missing, and text
is cleaned (no NUL, no lone surrogate) before it goes into an event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from app.bounces.events import BounceEvent, Kind, classify, status_code
from app.config import Settings, get_settings
from app.db import dialect_insert, get_engine, utcnow
from app.errors import AppError, Invalid
from app.ratelimit import RateCounter, redis_client
from app.validation import CONTROL_MESSAGE, has_control

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# SendGrid and Mailgun timestamps further than this from our clock are refused.
MAX_AGE_SECONDS = 600
# A Mailgun timestamp may run this far ahead of our clock; with MAX_AGE_SECONDS this keeps every
# accepted token inside TOKEN_TTL_SECONDS, so a token is remembered as long as it could be replayed.
MAX_AHEAD_SECONDS = 300
TOKEN_TTL_SECONDS = 900
FETCH_TIMEOUT_SECONDS = 5
FETCH_MAX_BYTES = 64 * 1024
CERT_CACHE_SIZE = 16
MAX_TEXT = 1000


class WebhookRefused(AppError):
    """The call could not be shown to come from the provider."""

    status_code = 401


# --- reading untrusted JSON -------------------------------------------------------------------


def _load_json(body: bytes) -> Any:
    _check_size(body)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Invalid("the body is not valid JSON") from exc


def _check_size(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise AppError(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[dict[str, Any]]:
    """The objects in a JSON array; anything else in it is skipped."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A string field made safe to store: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()
    return cleaned[:limit] or None


def _address(value: Any) -> str | None:
    if isinstance(value, str) and has_control(value):
        raise Invalid(f"a recipient address {CONTROL_MESSAGE}")
    text = _text(value, 1000)
    if text is None:
        return None
    if text.endswith(">") and "<" in text:  # "Name <addr>"
        text = text[text.rindex("<") + 1 : -1].strip()
    return text.lower() if text and len(text) <= 320 else None


def _message_id(value: Any) -> str | None:
    text = _text(value, 998)
    if text is None:
        return None
    return text.strip("<>").strip() or None


def _status(*texts: Any) -> str | None:
    """The first RFC 3463 code found in the given fields."""
    for text in texts:
        if isinstance(text, str) and (code := status_code(text)):
            return code
    return None


_SMTP_REPLY = re.compile(r"^\s*([245][0-9][0-9])(?![0-9])")


def _smtp_code(value: Any) -> int | None:
    """An SMTP reply code from a number or from the start of a reply text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 200 <= value <= 599 else None
    if isinstance(value, str) and (match := _SMTP_REPLY.match(value)):
        return int(match[1])
    return None


def _unix_time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        return None


_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def _iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        # Postmark writes seven fractional digits; Python reads at most six.
        parsed = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}


def _permanent(status: str | None, smtp_code: int | None = None) -> Kind:
    """A failure the provider calls permanent: hard, unless its status says otherwise
    (5.7.x is a policy block of the sender, 5.2.2 and 4.x.x are soft)."""
    if status is None and smtp_code is None:
        return "hard"
    kind = classify(status, smtp_code=smtp_code)
    return "hard" if kind == "delayed" else kind


def _temporary(status: str | None) -> Kind:
    """A failure the provider calls temporary: soft, or policy when the status is 5.7.x (a block
    of the sender, for which no reader should be counted a bounce)."""
    return "policy" if status is not None and classify(status) == "policy" else "soft"


def _utf8(text: str) -> bytes:
    # Lone surrogates cannot be what was signed; encoding them anyway makes the check fail.
    return text.encode("utf-8", "surrogatepass")


# --- Amazon SES through SNS -------------------------------------------------------------------

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
    message = _load_json(body)
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
    return _ses_notification(notification)


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
    return _utf8("".join(parts))


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
    for header in _items(mail.get("headers")):
        name = header.get("name")
        if isinstance(name, str) and name.lower() == "message-id":
            found = _message_id(header.get("value"))
            if found:
                return found
    return _message_id(_obj(mail.get("commonHeaders")).get("messageId"))


def _ses_notification(notification: dict[str, Any]) -> list[BounceEvent]:
    # Topic notifications say notificationType; configuration-set event publishing, eventType.
    kind = _text(notification.get("notificationType")) or _text(notification.get("eventType"))
    mail = _obj(notification.get("mail"))
    source = _address(mail.get("source"))
    verp_addresses = (source,) if source else ()
    message_id = _ses_message_id(mail)
    events = []
    if kind == "Bounce":
        bounce = _obj(notification.get("bounce"))
        bounce_type = _text(bounce.get("bounceType"))
        fallback = f"Amazon SES: {bounce_type or 'unknown'} bounce"
        if sub_type := _text(bounce.get("bounceSubType")):
            fallback += f" ({sub_type})"
        occurred_at = _iso_time(bounce.get("timestamp"))
        for recipient in _items(bounce.get("bouncedRecipients")):
            diagnostic = _text(recipient.get("diagnosticCode"))
            status = _status(recipient.get("status"), diagnostic)
            if bounce_type == "Permanent":
                failure = _permanent(status)
            elif bounce_type == "Transient":
                failure = _temporary(status)
            else:  # Undetermined
                failure = classify(status)
            events.append(BounceEvent(
                kind=failure, recipient=_address(recipient.get("emailAddress")), status=status,
                diagnostic=diagnostic or fallback, source="ses", verp_addresses=verp_addresses,
                message_id=message_id, occurred_at=occurred_at,
            ))
    elif kind == "Complaint":
        complaint = _obj(notification.get("complaint"))
        feedback = _text(complaint.get("complaintFeedbackType"), 100)
        occurred_at = _iso_time(complaint.get("timestamp"))
        for recipient in _items(complaint.get("complainedRecipients")):
            events.append(BounceEvent(
                kind="complaint", recipient=_address(recipient.get("emailAddress")),
                status=None, diagnostic=f"complaint: {feedback}" if feedback else "complaint",
                source="ses", verp_addresses=verp_addresses, message_id=message_id,
                occurred_at=occurred_at,
            ))
    return events


# --- SendGrid ---------------------------------------------------------------------------------


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


def _fresh(timestamp: str, *, ahead: int = MAX_AGE_SECONDS) -> bool:
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        return False
    age = time.time() - int(timestamp)
    return -ahead <= age <= MAX_AGE_SECONDS


def sendgrid_events(body: bytes, headers: Mapping[str, str]) -> list[BounceEvent]:
    """Events in a SendGrid signed Event Webhook post.

    The ECDSA P-256 signature (header X-Twilio-Email-Event-Webhook-Signature) covers the
    timestamp header followed by the raw body; a timestamp more than ten minutes away is refused.
    Bounces, blocks, drops of a bounced address and spam reports give events; the rest none.
    """
    _check_size(body)
    configured = get_settings().sendgrid_public_key
    if not configured:
        raise WebhookRefused("SendGrid webhooks are not configured (MISSIVE_SENDGRID_PUBLIC_KEY)")
    try:
        public_key = _sendgrid_key(configured)
    except (ValueError, UnsupportedAlgorithm) as exc:
        logger.error("MISSIVE_SENDGRID_PUBLIC_KEY is not a base64 DER ECDSA P-256 key: %s", exc)
        raise WebhookRefused("the SendGrid verification key is misconfigured") from exc
    lowered = _headers(headers)
    encoded = lowered.get("x-twilio-email-event-webhook-signature")
    timestamp = lowered.get("x-twilio-email-event-webhook-timestamp")
    if not encoded or not timestamp:
        raise WebhookRefused("the SendGrid signature headers are missing")
    if not _fresh(timestamp):
        raise WebhookRefused("the SendGrid timestamp is not within ten minutes of now")
    try:
        signature = base64.b64decode(encoded, validate=True)
        public_key.verify(signature, _utf8(timestamp) + body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature) as exc:
        raise WebhookRefused("the SendGrid signature does not verify") from exc
    payload = _load_json(body)
    if not isinstance(payload, list):
        raise Invalid("a SendGrid Event Webhook post is a JSON array")
    return [event for item in _items(payload) if (event := _sendgrid_event(item))]


def _sendgrid_event(item: dict[str, Any]) -> BounceEvent | None:
    name = _text(item.get("event"))
    reason = _text(item.get("reason"))
    status: str | None = None
    kind: Kind
    if name == "bounce":
        status = _status(item.get("status"), reason)
        if _text(item.get("type")) == "blocked":
            kind = _temporary(status)
        else:
            kind = _permanent(status, _smtp_code(reason))
    elif name == "dropped":
        # Only a drop for an address that bounced before says anything about the address.
        if reason != "Bounced Address":
            return None
        kind = "hard"
    elif name == "spamreport":
        kind = "complaint"
    else:
        return None
    return BounceEvent(
        kind=kind, recipient=_address(item.get("email")), status=status,
        diagnostic=reason or name, source="sendgrid",
        message_id=_message_id(item.get("smtp-id")), occurred_at=_unix_time(item.get("timestamp")),
    )


# --- Postmark ---------------------------------------------------------------------------------

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError"}
_POSTMARK_POLICY = {"Blocked", "DMARCPolicy", "SpamNotification", "VirusNotification"}
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
    _check_size(body)
    settings = get_settings()
    if not settings.postmark_user or not settings.postmark_password:
        raise WebhookRefused("Postmark webhooks are not configured (MISSIVE_POSTMARK_USER and "
                             "MISSIVE_POSTMARK_PASSWORD)")
    given = _basic_credentials(_headers(headers).get("authorization"))
    user, password = given if given else (b"", b"")
    # Both compared, always, so the time taken does not tell which one was wrong.
    user_ok = hmac.compare_digest(user, _utf8(settings.postmark_user))
    password_ok = hmac.compare_digest(password,
                                      _utf8(settings.postmark_password.get_secret_value()))
    if not (given and user_ok and password_ok):
        raise WebhookRefused("the Postmark credentials are missing or wrong")
    payload = _load_json(body)
    if not isinstance(payload, dict):
        raise Invalid("a Postmark webhook post is a JSON object")
    event = _postmark_event(payload)
    return [event] if event else []


def _postmark_event(payload: dict[str, Any]) -> BounceEvent | None:
    record = _text(payload.get("RecordType"))
    bounce_type = _text(payload.get("Type"))
    details = _text(payload.get("Details"))
    description = _text(payload.get("Description"))
    status = _status(details, description)
    kind: Kind
    if record == "SpamComplaint" or (record == "Bounce" and bounce_type == "SpamComplaint"):
        kind, status = "complaint", None
    elif record != "Bounce" or bounce_type in _POSTMARK_IGNORED:
        return None
    elif bounce_type in _POSTMARK_HARD:
        kind = _permanent(status)
    elif bounce_type in _POSTMARK_SOFT:
        kind = _temporary(status)
    elif status is not None:
        kind = classify(status)
    else:
        kind = "policy" if bounce_type in _POSTMARK_POLICY else "soft"
    return BounceEvent(
        kind=kind, recipient=_address(payload.get("Email")), status=status,
        diagnostic=details or description or bounce_type or "bounce", source="postmark",
        message_id=_message_id(_obj(payload.get("Metadata")).get("message_id")),
        occurred_at=_iso_time(payload.get("BouncedAt")),
    )


# --- Mailgun ----------------------------------------------------------------------------------

# Mailgun refusing to send because the address unsubscribed or complained is not a bounce.
_MAILGUN_NOT_BOUNCES = {"suppress-unsubscribe", "suppress-complaint"}


def mailgun_events(body: bytes, headers: Mapping[str, str]) -> list[BounceEvent]:
    """Events in a Mailgun webhook post (JSON, `signature` and `event-data`).

    The signature is an HMAC-SHA256 of timestamp + token with MISSIVE_MAILGUN_SIGNING_KEY. It
    does not cover the event, so a timestamp older than ten minutes is refused and each token is
    accepted once. The headers are not used: Mailgun signs in the body.
    """
    payload = _load_json(body)
    if not isinstance(payload, dict):
        raise Invalid("a Mailgun webhook post is a JSON object")
    key = get_settings().mailgun_signing_key.get_secret_value()
    if not key:
        raise WebhookRefused("Mailgun webhooks are not configured (MISSIVE_MAILGUN_SIGNING_KEY)")
    signature = _obj(payload.get("signature"))
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not (isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)
            and token):
        raise WebhookRefused("the Mailgun signature is missing")
    expected = hmac.new(_utf8(key), _utf8(timestamp + token), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(_utf8(expected), _utf8(given.lower())):
        raise WebhookRefused("the Mailgun signature does not verify")
    if not _fresh(timestamp, ahead=MAX_AHEAD_SECONDS):
        raise WebhookRefused("the Mailgun timestamp is not within ten minutes of now")
    event_data = payload.get("event-data")
    if not isinstance(event_data, dict):
        raise Invalid("the Mailgun post has no event-data object")
    # Translated before the token is spent, so a post we cannot read can be sent again.
    events = _mailgun_events(event_data)
    if not _first_use_of_token(token):
        raise WebhookRefused("this Mailgun token was already used (a replay)")
    return events


def _first_use_of_token(token: str) -> bool:
    """Remember a Mailgun token for TOKEN_TTL_SECONDS; True if it had not been seen."""
    key = f"mailgun-token:{hashlib.sha256(_utf8(token)).hexdigest()}"
    settings = get_settings()
    if settings.redis_url:
        client = redis_client(settings.redis_url)
        return bool(client.set(f"{settings.redis_prefix}{key}", b"1", nx=True,
                               ex=TOKEN_TTL_SECONDS))
    # The rate-limit table holds it (window 0); `missive beat` purges it once expired. Its own
    # transaction, so the token stays spent whatever becomes of the request's.
    engine = get_engine()
    stmt = dialect_insert(engine, RateCounter).values(
        key=key, window=0, count=1, expires_at=utcnow() + timedelta(seconds=TOKEN_TTL_SECONDS)
    ).on_conflict_do_nothing(index_elements=["key", "window"]).returning(RateCounter.key)
    with engine.begin() as conn:
        return conn.execute(stmt).first() is not None


def _mailgun_events(data: dict[str, Any]) -> list[BounceEvent]:
    name = _text(data.get("event"))
    delivery = _obj(data.get("delivery-status"))
    reply = _text(delivery.get("message"))
    description = _text(delivery.get("description"))
    status: str | None = None
    kind: Kind
    if name == "failed":
        if _text(data.get("reason")) in _MAILGUN_NOT_BOUNCES:
            return []
        status = _status(delivery.get("enhanced-code"), reply, description)
        if _text(data.get("severity")) == "permanent":
            kind = _permanent(status, _smtp_code(delivery.get("code")))
        else:
            kind = _temporary(status)
        diagnostic = reply or description or _text(data.get("reason")) or "failed"
    elif name == "complained":
        kind, diagnostic = "complaint", "complaint"
    else:
        return []
    sender = _address(_obj(data.get("envelope")).get("sender"))
    headers = _obj(_obj(data.get("message")).get("headers"))
    return [BounceEvent(
        kind=kind, recipient=_address(data.get("recipient")), status=status,
        diagnostic=diagnostic, source="mailgun", verp_addresses=(sender,) if sender else (),
        message_id=_message_id(headers.get("message-id")),
        occurred_at=_unix_time(data.get("timestamp")),
    )]
