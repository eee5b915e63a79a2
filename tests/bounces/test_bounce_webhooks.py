"""Provider webhooks: real signatures made with real keys, checked by the real verification.

SNS messages are signed here exactly as SNS signs them (a self-signed certificate stands in for
Amazon's, served by a recording `fetch_certificate`); SendGrid posts with an ECDSA P-256 key;
Postmark with Basic credentials; Mailgun with the HMAC and one-time tokens, in Redis and in the
database fallback.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from app.bounces import webhooks
from app.bounces.events import BounceEvent
from app.bounces.webhooks import WebhookRefused
from app.config import get_settings
from app.errors import AppError, Invalid

TOPIC = "arn:aws:sns:us-east-1:123456789012:missive-ses"
OTHER_TOPIC = "arn:aws:sns:eu-west-1:123456789012:missive-ses-eu"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = ("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
                 f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425f004aed")
VERP = "bounces+42-0123456789abcdef@news.example.org"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "s3cret pass:word"
MAILGUN_KEY = "key-" + "7" * 32


# --- keys, certificates and settings ----------------------------------------------------------


def _certificate(key: rsa.RSAPrivateKey, *, not_before: datetime, not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def cert_pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    now = datetime.now(UTC)
    return _certificate(rsa_key, not_before=now - timedelta(days=1),
                        not_after=now + timedelta(days=30))


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class Fetcher:
    """Stands in for the https GET: Amazon's certificate at CERT_URL, an empty answer for a
    SubscribeURL; records every URL asked for."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url == CERT_URL:
            return self.pem
        if url.startswith("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"):
            return b"<ConfirmSubscriptionResponse/>"
        raise OSError(f"404 for {url}")


@pytest.fixture
def fetch(cert_pem: bytes) -> Fetcher:
    return Fetcher(cert_pem)


@pytest.fixture(autouse=True)
def configured(monkeypatch: pytest.MonkeyPatch, ec_key: ec.EllipticCurvePrivateKey
               ) -> Iterator[None]:
    settings = get_settings()
    der = ec_key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setattr(settings, "ses_topic_arns", f"{TOPIC}, {OTHER_TOPIC}")
    monkeypatch.setattr(settings, "ses_auto_confirm", False)
    monkeypatch.setattr(settings, "sendgrid_public_key", base64.b64encode(der).decode())
    monkeypatch.setattr(settings, "postmark_user", POSTMARK_USER)
    monkeypatch.setattr(settings, "postmark_password", SecretStr(POSTMARK_PASSWORD))
    monkeypatch.setattr(settings, "mailgun_signing_key", SecretStr(MAILGUN_KEY))
    webhooks._certificates.clear()
    yield
    webhooks._certificates.clear()


# --- SNS, signed as SNS signs -----------------------------------------------------------------

SIGNED = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"],
}
SIGNED["UnsubscribeConfirmation"] = SIGNED["SubscriptionConfirmation"]


def sns_sign(message: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "2"
             ) -> dict[str, Any]:
    """Sign as SNS does: "Name\\nvalue\\n" for each signed field present, in this order."""
    text = "".join(f"{name}\n{message[name]}\n" for name in SIGNED[message["Type"]]
                   if isinstance(message.get(name), str))
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    signature = key.sign(text.encode("utf-8", "surrogatepass"), padding.PKCS1v15(), algorithm)
    return {**message, "SignatureVersion": version, "SigningCertURL": CERT_URL,
            "Signature": base64.b64encode(signature).decode()}


def sns_notification(ses: dict[str, Any], *, topic: str = TOPIC, subject: str | None = None
                     ) -> dict[str, Any]:
    message = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": topic,
        "Message": json.dumps(ses),
        "Timestamp": "2026-01-27T14:59:38.237Z",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&x=1",
    }
    if subject is not None:
        message["Subject"] = subject
    return message


def sns_body(message: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "2") -> bytes:
    return json.dumps(sns_sign(message, key, version)).encode()


def ses_mail() -> dict[str, Any]:
    return {
        "timestamp": "2026-01-27T14:59:37.000Z",
        "source": VERP,
        "messageId": "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
        "destination": ["Reader@Example.com"],
        "headers": [{"name": "From", "value": "Digest <news@news.example.org>"},
                    {"name": "Message-ID", "value": "<issue-22.42@news.example.org>"}],
        "commonHeaders": {"messageId": "0000014644fe5ef6-9a483358", "subject": "Vol 2.22"},
    }


def ses_bounce(bounce_type: str = "Permanent", recipients: list[dict[str, Any]] | None = None
               ) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": recipients if recipients is not None else [
                {"emailAddress": "Reader@Example.com", "action": "failed", "status": "5.1.1",
                 "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
            ],
            "timestamp": "2026-01-27T14:59:38.237Z",
            "feedbackId": "00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000",
        },
        "mail": ses_mail(),
    }


def ses_complaint() -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "reader@example.com"}],
            "timestamp": "2026-01-27T15:00:01.000Z",
            "complaintFeedbackType": "abuse",
        },
        "mail": ses_mail(),
    }


def test_ses_permanent_bounce_becomes_a_hard_event_with_everything_known(rsa_key, fetch):
    events = webhooks.ses_events(sns_body(sns_notification(ses_bounce()), rsa_key),
                                 fetch_certificate=fetch)
    assert events == [BounceEvent(
        kind="hard", recipient="reader@example.com", status="5.1.1",
        diagnostic="smtp; 550 5.1.1 user unknown", source="ses", verp_addresses=(VERP,),
        message_id="issue-22.42@news.example.org",
        occurred_at=datetime(2026, 1, 27, 14, 59, 38, 237000, tzinfo=UTC), reason="userunknown",
    )]
    assert fetch.calls == [CERT_URL]


@pytest.mark.parametrize(("bounce_type", "status", "kind", "reason"), [
    ("Permanent", "5.1.1", "hard", "userunknown"),
    ("Permanent", None, "hard", "userunknown"),  # e.g. SES's suppression list: no status at all
    ("Permanent", "5.7.1", "policy", "policyviolation"),  # a block of the sender
    ("Permanent", "5.2.2", "soft", "mailboxfull"),
    ("Transient", "4.4.7", "soft", "expired"),
    ("Transient", None, "soft", "undefined"),
    ("Transient", "5.7.1", "policy", "policyviolation"),
    ("Undetermined", None, "soft", "undefined"),
])
def test_ses_bounce_kinds(rsa_key, fetch, bounce_type, status, kind, reason):
    recipient: dict[str, Any] = {"emailAddress": "a@example.com"}
    if status:
        recipient["status"] = status
    ses = ses_bounce(bounce_type, [recipient])
    [event] = webhooks.ses_events(sns_body(sns_notification(ses), rsa_key),
                                  fetch_certificate=fetch)
    assert (event.kind, event.status, event.reason) == (kind, status, reason)
    assert event.diagnostic.startswith("Amazon SES:")


def test_ses_bounce_with_several_recipients_gives_one_event_each(rsa_key, fetch):
    ses = ses_bounce(recipients=[
        {"emailAddress": "a@example.com", "status": "5.1.1"},
        {"emailAddress": "b@example.com", "status": "5.2.2"},
        "not an object",
    ])
    events = webhooks.ses_events(sns_body(sns_notification(ses), rsa_key),
                                 fetch_certificate=fetch)
    assert [(e.recipient, e.kind) for e in events] == [("a@example.com", "hard"),
                                                       ("b@example.com", "soft")]


def test_ses_complaint(rsa_key, fetch):
    [event] = webhooks.ses_events(sns_body(sns_notification(ses_complaint()), rsa_key),
                                  fetch_certificate=fetch)
    assert event.kind == "complaint"
    assert event.recipient == "reader@example.com"
    assert event.diagnostic == "complaint: abuse"
    assert event.verp_addresses == (VERP,)
    assert event.occurred_at == datetime(2026, 1, 27, 15, 0, 1, tzinfo=UTC)


def test_ses_delivery_and_other_notifications_give_nothing(rsa_key, fetch):
    for ses in ({"notificationType": "Delivery", "mail": ses_mail(),
                 "delivery": {"recipients": ["reader@example.com"]}},
                {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"},
                {"eventType": "Open", "mail": ses_mail()}):
        assert webhooks.ses_events(sns_body(sns_notification(ses), rsa_key),
                                   fetch_certificate=fetch) == []


def test_ses_event_publishing_uses_event_type(rsa_key, fetch):
    ses = ses_bounce()
    ses["eventType"] = ses.pop("notificationType")
    [event] = webhooks.ses_events(sns_body(sns_notification(ses), rsa_key),
                                  fetch_certificate=fetch)
    assert event.kind == "hard"


def test_ses_message_id_from_common_headers_when_the_headers_are_absent(rsa_key, fetch):
    ses = ses_bounce()
    del ses["mail"]["headers"]
    ses["mail"]["commonHeaders"]["messageId"] = "<theirs@example.org>"
    [event] = webhooks.ses_events(sns_body(sns_notification(ses), rsa_key),
                                  fetch_certificate=fetch)
    assert event.message_id == "theirs@example.org"


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
def test_both_signature_versions_with_and_without_a_subject(rsa_key, fetch, version, subject):
    body = sns_body(sns_notification(ses_bounce(), subject=subject), rsa_key, version)
    assert len(webhooks.ses_events(body, fetch_certificate=fetch)) == 1


def test_the_certificate_is_fetched_once_per_url(rsa_key, fetch):
    for _ in range(3):
        webhooks.ses_events(sns_body(sns_notification(ses_bounce()), rsa_key),
                            fetch_certificate=fetch)
    assert fetch.calls == [CERT_URL]


def test_a_bad_signature_is_refused(rsa_key, fetch):
    message = sns_sign(sns_notification(ses_bounce()), rsa_key)
    message["Signature"] = base64.b64encode(secrets.token_bytes(256)).decode()
    with pytest.raises(WebhookRefused):
        webhooks.ses_events(json.dumps(message).encode(), fetch_certificate=fetch)


def test_a_signature_by_another_key_is_refused(fetch):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(WebhookRefused):
        webhooks.ses_events(sns_body(sns_notification(ses_bounce()), stranger),
                            fetch_certificate=fetch)


@pytest.mark.parametrize(("field", "value"), [
    ("Message", json.dumps(ses_bounce(recipients=[{"emailAddress": "victim@example.com",
                                                   "status": "5.1.1"}]))),
    ("MessageId", "another"),
    ("Timestamp", "2026-01-28T00:00:00.000Z"),
    ("TopicArn", OTHER_TOPIC),              # allowed too, but not what was signed
    ("Subject", "added after signing"),
    ("Type", "SubscriptionConfirmation"),
])
def test_a_field_changed_after_signing_is_refused(rsa_key, fetch, field, value):
    message = sns_sign(sns_notification(ses_bounce()), rsa_key)
    message[field] = value
    if field == "Type":
        message.update(SubscribeURL=SUBSCRIBE_URL, Token="t")
    with pytest.raises(WebhookRefused):
        webhooks.ses_events(json.dumps(message).encode(), fetch_certificate=fetch)


@pytest.mark.parametrize("version", ["3", "", None, 2])
def test_an_unknown_signature_version_is_refused(rsa_key, fetch, version):
    message = sns_sign(sns_notification(ses_bounce()), rsa_key)
    message["SignatureVersion"] = version
    with pytest.raises(WebhookRefused):
        webhooks.ses_events(json.dumps(message).encode(), fetch_certificate=fetch)
    assert fetch.calls == []


@pytest.mark.parametrize("url", [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
    "https://evil.example/SimpleNotificationService-0123456789abcdef.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-0.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef",
    "https://sns.us-east-1.amazonaws.com/cert.pem.txt",
    "https://sns.us-east-1.amazonaws.com/cert.pem?x=1",
    "https://sns.us-east-1.amazonaws.com/cert.pem#x",
    "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
    "https://user@sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem",
    "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.amazonaws.com/cert.pem",
    "https://sns.evil.example.amazonaws.com/cert.pem",
    "https://s3.us-east-1.amazonaws.com/cert.pem",
    "https://bucket.sns.us-east-1.amazonaws.com/cert.pem",
    "https://SNS.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com/cert.pem\n",
    "https://sns.us-east-1.amazonaws.com\\@evil.example/cert.pem",
    "https://sns.us-east-1.amazonaws.com/",
    "",
    None,
    ["https://sns.us-east-1.amazonaws.com/cert.pem"],
])
def test_a_certificate_url_off_sns_is_refused_without_fetching(rsa_key, fetch, url):
    message = sns_sign(sns_notification(ses_bounce()), rsa_key)
    message["SigningCertURL"] = url
    with pytest.raises(WebhookRefused):
        webhooks.ses_events(json.dumps(message).encode(), fetch_certificate=fetch)
    assert fetch.calls == []


def test_a_china_region_certificate_url_is_accepted(rsa_key, cert_pem):
    url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem"
    calls: list[str] = []

    def fetch(u: str) -> bytes:
        calls.append(u)
        return cert_pem

    message = sns_sign(sns_notification(ses_bounce()), rsa_key)
    message["SigningCertURL"] = url
    assert len(webhooks.ses_events(json.dumps(message).encode(), fetch_certificate=fetch)) == 1
    assert calls == [url]


def test_a_topic_not_allowed_is_refused_without_fetching(rsa_key, fetch):
    body = sns_body(sns_notification(ses_bounce(), topic="arn:aws:sns:us-east-1:666:evil"),
                    rsa_key)
    with pytest.raises(WebhookRefused, match="topic"):
        webhooks.ses_events(body, fetch_certificate=fetch)
    assert fetch.calls == []


def test_no_topic_configured_refuses_all_ses(rsa_key, fetch, monkeypatch):
    monkeypatch.setattr(get_settings(), "ses_topic_arns", " , ")
    with pytest.raises(WebhookRefused, match="not configured"):
        webhooks.ses_events(sns_body(sns_notification(ses_bounce()), rsa_key),
                            fetch_certificate=fetch)
    assert fetch.calls == []


@pytest.mark.parametrize("days", [(-10, -1), (1, 10)])
def test_a_certificate_not_valid_now_is_refused(rsa_key, days):
    now = datetime.now(UTC)
    pem = _certificate(rsa_key, not_before=now + timedelta(days=days[0]),
                       not_after=now + timedelta(days=days[1]))
    with pytest.raises(WebhookRefused, match="not valid now"):
        webhooks.ses_events(sns_body(sns_notification(ses_bounce()), rsa_key),
                            fetch_certificate=Fetcher(pem))
    assert webhooks._certificates == {}


def test_a_certificate_that_cannot_be_read_is_refused(rsa_key):
    with pytest.raises(WebhookRefused, match="cannot be read"):
        webhooks.ses_events(sns_body(sns_notification(ses_bounce()), rsa_key),
                            fetch_certificate=Fetcher(b"<html>not a certificate</html>"))


def test_a_certificate_that_cannot_be_fetched_asks_sns_to_retry(rsa_key):
    def unreachable(url: str) -> bytes:
        raise TimeoutError("timed out")

    with pytest.raises(AppError) as caught:
        webhooks.ses_events(sns_body(sns_notification(ses_bounce()), rsa_key),
                            fetch_certificate=unreachable)
    assert caught.value.status_code == 503


def subscription(kind: str = "SubscriptionConfirmation", url: str = SUBSCRIBE_URL
                 ) -> dict[str, Any]:
    return {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425f004aed",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": url,
        "Timestamp": "2026-01-27T14:00:00.000Z",
    }


def test_a_subscription_confirmation_is_not_confirmed_unless_asked(rsa_key, fetch, caplog):
    assert webhooks.ses_events(sns_body(subscription(), rsa_key), fetch_certificate=fetch) == []
    assert fetch.calls == [CERT_URL]
    assert SUBSCRIBE_URL in caplog.text


def test_a_subscription_confirmation_is_confirmed_when_asked(rsa_key, fetch, monkeypatch):
    monkeypatch.setattr(get_settings(), "ses_auto_confirm", True)
    assert webhooks.ses_events(sns_body(subscription(), rsa_key), fetch_certificate=fetch) == []
    assert fetch.calls == [CERT_URL, SUBSCRIBE_URL]


@pytest.mark.parametrize("url", [
    "https://evil.example/?Action=ConfirmSubscription",
    "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
    "https://sns.us-east-1.amazonaws.com.evil.example/?Action=ConfirmSubscription",
])
def test_a_subscribe_url_off_sns_is_never_fetched(rsa_key, fetch, monkeypatch, url):
    monkeypatch.setattr(get_settings(), "ses_auto_confirm", True)
    with pytest.raises(WebhookRefused):
        webhooks.ses_events(sns_body(subscription(url=url), rsa_key), fetch_certificate=fetch)
    assert fetch.calls == [CERT_URL]


def test_a_forged_subscription_confirmation_is_never_fetched(rsa_key, fetch, monkeypatch):
    monkeypatch.setattr(get_settings(), "ses_auto_confirm", True)
    message = sns_sign(subscription(), rsa_key)
    message["SubscribeURL"] = SUBSCRIBE_URL + "&other=1"
    with pytest.raises(WebhookRefused):
        webhooks.ses_events(json.dumps(message).encode(), fetch_certificate=fetch)
    assert fetch.calls == [CERT_URL]


def test_an_unsubscribe_confirmation_gives_nothing(rsa_key, fetch):
    body = sns_body(subscription("UnsubscribeConfirmation"), rsa_key)
    assert webhooks.ses_events(body, fetch_certificate=fetch) == []


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe\x00", b"[1, 2]", b"null", b"42",
                                  b"[" * 100_000 + b"]" * 100_000])
def test_ses_malformed_bodies_are_invalid(fetch, body):
    with pytest.raises(Invalid):
        webhooks.ses_events(body, fetch_certificate=fetch)


@pytest.mark.parametrize("message", [{}, {"Type": "Nonsense"}, {"Type": ["Notification"]}])
def test_ses_messages_of_no_known_type_are_refused(fetch, message):
    with pytest.raises(WebhookRefused):
        webhooks.ses_events(json.dumps(message).encode(), fetch_certificate=fetch)


def test_an_ses_notification_whose_message_is_not_json_is_invalid(rsa_key, fetch):
    message = sns_notification({})
    message["Message"] = "plain words"
    with pytest.raises(Invalid):
        webhooks.ses_events(sns_body(message, rsa_key), fetch_certificate=fetch)


def test_a_lone_surrogate_in_a_signed_field_is_refused_not_a_crash(rsa_key, fetch):
    message = sns_sign(sns_notification(ses_bounce()), rsa_key)
    message["Subject"] = "\ud800"
    with pytest.raises(WebhookRefused):
        webhooks.ses_events(json.dumps(message).encode(), fetch_certificate=fetch)


# --- SendGrid ---------------------------------------------------------------------------------


def sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int | None = None
                     ) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts}


SENDGRID_EVENTS = [
    {"email": "Hard@Example.com", "timestamp": 1769525978, "event": "bounce", "type": "bounce",
     "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "status": "5.1.1",
     "reason": "550 5.1.1 The email account that you tried to reach does not exist",
     "sg_event_id": "a", "sg_message_id": "b"},
    {"email": "blocked@example.com", "timestamp": 1769525978, "event": "bounce",
     "type": "blocked", "status": "5.7.1", "reason": "554 5.7.1 rejected by policy"},
    {"email": "later@example.com", "timestamp": 1769525978, "event": "bounce",
     "type": "blocked", "status": "4.2.0", "reason": "421 try again later"},
    {"email": "nostatus@example.com", "timestamp": 1769525978, "event": "bounce",
     "type": "bounce", "reason": "unknown recipient"},
    {"email": "dropped@example.com", "timestamp": 1769525978, "event": "dropped",
     "reason": "Bounced Address"},
    {"email": "unsub@example.com", "timestamp": 1769525978, "event": "dropped",
     "reason": "Unsubscribed Address"},
    {"email": "angry@example.com", "timestamp": 1769525978, "event": "spamreport",
     "smtp-id": "<x@y>"},
    {"email": "fine@example.com", "timestamp": 1769525978, "event": "delivered"},
    {"email": "fine@example.com", "timestamp": 1769525978, "event": "deferred"},
    {"email": "fine@example.com", "timestamp": 1769525978, "event": "open"},
    "not an event",
]


def test_sendgrid_signed_events_are_translated(ec_key):
    body = json.dumps(SENDGRID_EVENTS).encode()
    events = webhooks.sendgrid_events(body, sendgrid_headers(ec_key, body))
    assert [(e.recipient, e.kind, e.status) for e in events] == [
        ("hard@example.com", "hard", "5.1.1"),
        ("blocked@example.com", "policy", "5.7.1"),
        # SendGrid's "blocked" refuses our IP or domain: nobody's bounce.
        ("later@example.com", "policy", "4.2.0"),
        ("nostatus@example.com", "hard", None),
        ("dropped@example.com", "hard", None),
        ("angry@example.com", "complaint", None),
    ]
    first = events[0]
    assert first.source == "sendgrid"
    assert first.message_id == "14c5d75ce93.dfd.64b469@ismtpd-555"
    assert first.diagnostic.startswith("550 5.1.1")
    assert first.occurred_at == datetime.fromtimestamp(1769525978, UTC)


def test_sendgrid_headers_are_found_whatever_their_case(ec_key):
    body = json.dumps(SENDGRID_EVENTS[:1]).encode()
    headers = {k.lower(): v for k, v in sendgrid_headers(ec_key, body).items()}
    assert len(webhooks.sendgrid_events(body, headers)) == 1


def test_sendgrid_key_may_be_given_as_pem(ec_key, monkeypatch):
    pem = ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setattr(get_settings(), "sendgrid_public_key", pem.decode())
    body = json.dumps(SENDGRID_EVENTS[:1]).encode()
    assert len(webhooks.sendgrid_events(body, sendgrid_headers(ec_key, body))) == 1


def test_sendgrid_tampered_body_is_refused(ec_key):
    body = json.dumps(SENDGRID_EVENTS).encode()
    headers = sendgrid_headers(ec_key, body)
    tampered = body.replace(b"Hard@Example.com", b"victim@example.com")
    with pytest.raises(WebhookRefused):
        webhooks.sendgrid_events(tampered, headers)


def test_sendgrid_timestamp_is_signed_too(ec_key):
    body = json.dumps(SENDGRID_EVENTS).encode()
    headers = sendgrid_headers(ec_key, body)
    headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(time.time()) + 1)
    with pytest.raises(WebhookRefused):
        webhooks.sendgrid_events(body, headers)


@pytest.mark.parametrize("offset", [-601, -3600, 601])
def test_sendgrid_timestamp_far_from_now_is_refused(ec_key, offset):
    body = json.dumps(SENDGRID_EVENTS).encode()
    headers = sendgrid_headers(ec_key, body, int(time.time()) + offset)
    with pytest.raises(WebhookRefused, match="ten minutes"):
        webhooks.sendgrid_events(body, headers)


def test_sendgrid_signature_by_another_key_is_refused():
    body = json.dumps(SENDGRID_EVENTS).encode()
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(WebhookRefused):
        webhooks.sendgrid_events(body, sendgrid_headers(stranger, body))


@pytest.mark.parametrize("change", [
    {"X-Twilio-Email-Event-Webhook-Signature": None},
    {"X-Twilio-Email-Event-Webhook-Timestamp": None},
    {"X-Twilio-Email-Event-Webhook-Signature": "not base64!"},
    {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(b"\x30\x02\x01").decode()},
    {"X-Twilio-Email-Event-Webhook-Signature": ""},
    {"X-Twilio-Email-Event-Webhook-Timestamp": "soon"},
    {"X-Twilio-Email-Event-Webhook-Timestamp": "-5"},
    {"X-Twilio-Email-Event-Webhook-Timestamp": "9" * 400},
])
def test_sendgrid_bad_headers_are_refused(ec_key, change):
    body = json.dumps(SENDGRID_EVENTS).encode()
    headers = sendgrid_headers(ec_key, body)
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(WebhookRefused):
        webhooks.sendgrid_events(body, headers)


@pytest.mark.parametrize("key", ["", "not base64!", base64.b64encode(b"junk").decode()])
def test_sendgrid_without_a_usable_key_is_refused(ec_key, monkeypatch, key):
    monkeypatch.setattr(get_settings(), "sendgrid_public_key", key)
    body = json.dumps(SENDGRID_EVENTS).encode()
    with pytest.raises(WebhookRefused):
        webhooks.sendgrid_events(body, sendgrid_headers(ec_key, body))


def test_sendgrid_rsa_key_is_refused(ec_key, rsa_key, monkeypatch):
    der = rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setattr(get_settings(), "sendgrid_public_key", base64.b64encode(der).decode())
    body = json.dumps(SENDGRID_EVENTS).encode()
    with pytest.raises(WebhookRefused):
        webhooks.sendgrid_events(body, sendgrid_headers(ec_key, body))


@pytest.mark.parametrize("body", [b"{", b'{"event": "bounce"}', b"\xff", b"[" * 100_000])
def test_sendgrid_signed_but_malformed_is_invalid(ec_key, body):
    with pytest.raises(Invalid):
        webhooks.sendgrid_events(body, sendgrid_headers(ec_key, body))


# --- Postmark ---------------------------------------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


POSTMARK_BOUNCE = {
    "RecordType": "Bounce",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"message_id": "<issue-22.42@news.example.org>"},
    "MessageStream": "outbound",
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox "
                   "not found).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    "Email": "Reader@Example.com",
    "From": "news@news.example.org",
    "BouncedAt": "2026-01-27T16:33:54.9070259Z",
    "Inactive": True,
}


def test_postmark_hard_bounce(monkeypatch):
    body = json.dumps(POSTMARK_BOUNCE).encode()
    assert webhooks.postmark_events(body, basic(POSTMARK_USER, POSTMARK_PASSWORD)) == [
        BounceEvent(
            kind="hard", recipient="reader@example.com", status="5.1.1",
            diagnostic=POSTMARK_BOUNCE["Details"], source="postmark",
            message_id="issue-22.42@news.example.org",
            occurred_at=datetime(2026, 1, 27, 16, 33, 54, 907025, tzinfo=UTC),
            reason="userunknown",
        )
    ]


@pytest.mark.parametrize(("record", "bounce_type", "details", "kind"), [
    ("Bounce", "HardBounce", "", "hard"),
    ("Bounce", "BadEmailAddress", "", "hard"),
    ("Bounce", "SoftBounce", "mailbox full 4.2.2", "soft"),
    ("Bounce", "Transient", "", "soft"),
    ("Bounce", "DnsError", "", "soft"),
    ("Bounce", "SpamComplaint", "", "complaint"),
    ("SpamComplaint", "SpamComplaint", "", "complaint"),
    ("Bounce", "Blocked", "", "policy"),
    ("Bounce", "Blocked", "550 5.7.1 blocked", "policy"),
    ("Bounce", "Unknown", "", "soft"),
    ("Bounce", "Unknown", "550 5.1.1 no such user", "hard"),
    ("Bounce", "AutoResponder", "", None),
    ("Bounce", "Unsubscribe", "", None),
    ("Delivery", None, "", None),
    ("Open", None, "", None),
])
def test_postmark_types(record, bounce_type, details, kind):
    payload = {**POSTMARK_BOUNCE, "RecordType": record, "Type": bounce_type, "Details": details}
    events = webhooks.postmark_events(json.dumps(payload).encode(),
                                      basic(POSTMARK_USER, POSTMARK_PASSWORD))
    assert [e.kind for e in events] == ([kind] if kind else [])


def test_postmark_without_our_metadata_has_no_message_id():
    payload = {**POSTMARK_BOUNCE, "Metadata": {}}
    [event] = webhooks.postmark_events(json.dumps(payload).encode(),
                                       basic(POSTMARK_USER, POSTMARK_PASSWORD))
    assert event.message_id is None


@pytest.mark.parametrize("headers", [
    {},
    basic(POSTMARK_USER, "wrong"),
    basic("someone", POSTMARK_PASSWORD),
    basic("", ""),
    {"Authorization": f"Bearer {POSTMARK_PASSWORD}"},
    {"Authorization": "Basic not-base64!"},
    {"Authorization": "Basic " + base64.b64encode(POSTMARK_USER.encode()).decode()},
    {"Authorization": "Basic"},
    {"Authorization": "Basic ñ"},
])
def test_postmark_missing_or_wrong_credentials_are_refused(headers):
    with pytest.raises(WebhookRefused):
        webhooks.postmark_events(json.dumps(POSTMARK_BOUNCE).encode(), headers)


@pytest.mark.parametrize("unset", ["postmark_user", "postmark_password"])
def test_postmark_refused_while_credentials_are_unset(monkeypatch, unset):
    monkeypatch.setattr(get_settings(), unset,
                        SecretStr("") if unset == "postmark_password" else "")
    headers = basic(get_settings().postmark_user,
                    get_settings().postmark_password.get_secret_value())
    with pytest.raises(WebhookRefused, match="not configured"):
        webhooks.postmark_events(json.dumps(POSTMARK_BOUNCE).encode(), headers)


def test_postmark_lowercase_authorization_header():
    headers = {"authorization": basic(POSTMARK_USER, POSTMARK_PASSWORD)["Authorization"]}
    assert len(webhooks.postmark_events(json.dumps(POSTMARK_BOUNCE).encode(), headers)) == 1


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'"Bounce"'])
def test_postmark_malformed_is_invalid(body):
    with pytest.raises(Invalid):
        webhooks.postmark_events(body, basic(POSTMARK_USER, POSTMARK_PASSWORD))


# --- Mailgun ----------------------------------------------------------------------------------


def mailgun_body(event_data: dict[str, Any], *, timestamp: int | None = None,
                 token: str | None = None, key: str = MAILGUN_KEY) -> bytes:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": ts, "token": token, "signature": signature},
                       "event-data": event_data}).encode()


MAILGUN_FAILED = {
    "event": "failed",
    "id": "G9Bn5sl1TC6nu79C8C0bwg",
    "timestamp": 1769525978.329574,
    "log-level": "error",
    "severity": "permanent",
    "reason": "bounce",
    "recipient": "Reader@Example.com",
    "envelope": {"sender": VERP, "transport": "smtp", "targets": "reader@example.com"},
    "message": {"headers": {"to": "reader@example.com", "from": "news@news.example.org",
                            "message-id": "<issue-22.42@news.example.org>",
                            "subject": "Vol 2.22"}},
    "delivery-status": {"attempt-no": 1, "code": 550, "enhanced-code": "5.1.1",
                        "message": "5.1.1 The email account does not exist",
                        "description": "", "mx-host": "mx.example.com"},
}


def test_mailgun_permanent_failure():
    assert webhooks.mailgun_events(mailgun_body(MAILGUN_FAILED), {}) == [BounceEvent(
        kind="hard", recipient="reader@example.com", status="5.1.1",
        diagnostic="5.1.1 The email account does not exist", source="mailgun",
        verp_addresses=(VERP,), message_id="issue-22.42@news.example.org",
        occurred_at=datetime.fromtimestamp(1769525978.329574, UTC), reason="userunknown",
    )]


@pytest.mark.parametrize(("changes", "kind"), [
    ({"severity": "temporary"}, "soft"),
    ({"delivery-status": {"code": 550, "message": "5.7.1 blocked by policy"}}, "policy"),
    ({"delivery-status": {"code": 605,
                          "description": "Not delivering to previously bounced address"},
      "reason": "suppress-bounce"}, "hard"),
    ({"delivery-status": {"code": 421, "message": "try later"}}, "soft"),
    ({"reason": "suppress-unsubscribe"}, None),
    ({"reason": "suppress-complaint"}, None),
    ({"event": "complained"}, "complaint"),
    ({"event": "delivered"}, None),
    ({"event": "opened"}, None),
])
def test_mailgun_kinds(changes, kind):
    events = webhooks.mailgun_events(mailgun_body({**MAILGUN_FAILED, **changes}), {})
    assert [e.kind for e in events] == ([kind] if kind else [])


def test_mailgun_bad_signature_is_refused():
    with pytest.raises(WebhookRefused):
        webhooks.mailgun_events(mailgun_body(MAILGUN_FAILED, key="key-of-someone-else"), {})


def test_mailgun_signature_does_not_move_to_another_token():
    payload = json.loads(mailgun_body(MAILGUN_FAILED))
    payload["signature"]["token"] = secrets.token_hex(25)
    with pytest.raises(WebhookRefused):
        webhooks.mailgun_events(json.dumps(payload).encode(), {})


@pytest.mark.parametrize("offset", [-601, -86400, 301])
def test_mailgun_timestamp_far_from_now_is_refused(offset):
    body = mailgun_body(MAILGUN_FAILED, timestamp=int(time.time()) + offset)
    with pytest.raises(WebhookRefused, match="ten minutes"):
        webhooks.mailgun_events(body, {})


def test_mailgun_unset_key_refuses(monkeypatch):
    monkeypatch.setattr(get_settings(), "mailgun_signing_key", SecretStr(""))
    with pytest.raises(WebhookRefused, match="not configured"):
        webhooks.mailgun_events(mailgun_body(MAILGUN_FAILED, key=""), {})


@pytest.mark.parametrize("signature", [
    None, {}, "x", {"timestamp": "1", "token": "t"}, {"timestamp": [], "token": "t",
                                                      "signature": "s"},
    {"timestamp": "1", "token": "", "signature": "s"},
    {"timestamp": "1", "token": "t", "signature": "\ud800"},
])
def test_mailgun_missing_or_malformed_signature_is_refused(signature):
    body = json.dumps({"signature": signature, "event-data": MAILGUN_FAILED}).encode()
    with pytest.raises(WebhookRefused):
        webhooks.mailgun_events(body, {})


@pytest.mark.parametrize("backend", ["redis", "database"])
def test_mailgun_token_is_accepted_once(monkeypatch, backend):
    if backend == "database":
        monkeypatch.setattr(get_settings(), "redis_url", "")
    body = mailgun_body(MAILGUN_FAILED)
    assert len(webhooks.mailgun_events(body, {})) == 1
    with pytest.raises(WebhookRefused, match="replay"):
        webhooks.mailgun_events(body, {})
    # Another post, another token: accepted.
    assert len(webhooks.mailgun_events(mailgun_body(MAILGUN_FAILED), {})) == 1


def test_mailgun_database_tokens_expire_with_the_rate_counters(monkeypatch, db):
    from sqlalchemy import select

    from app.ratelimit import RateCounter

    monkeypatch.setattr(get_settings(), "redis_url", "")
    token = secrets.token_hex(25)
    webhooks.mailgun_events(mailgun_body(MAILGUN_FAILED, token=token), {})
    row = db.scalars(select(RateCounter)).one()
    assert row.key == "mailgun-token:" + hashlib.sha256(token.encode()).hexdigest()
    assert row.window == 0
    ttl = (row.expires_at - datetime.now(UTC)).total_seconds()
    assert 890 < ttl <= 900


def test_mailgun_redis_token_lives_fifteen_minutes_under_the_prefix():
    from app.ratelimit import redis_client

    token = secrets.token_hex(25)
    webhooks.mailgun_events(mailgun_body(MAILGUN_FAILED, token=token), {})
    settings = get_settings()
    key = f"{settings.redis_prefix}mailgun-token:{hashlib.sha256(token.encode()).hexdigest()}"
    assert 890 < redis_client(settings.redis_url).ttl(key) <= 900


def test_mailgun_post_that_cannot_be_read_does_not_spend_its_token():
    token = secrets.token_hex(25)
    with pytest.raises(Invalid):
        webhooks.mailgun_events(mailgun_body("nothing", token=token), {})  # type: ignore[arg-type]
    assert len(webhooks.mailgun_events(mailgun_body(MAILGUN_FAILED, token=token), {})) == 1


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"\xff", b"[" * 100_000])
def test_mailgun_malformed_is_invalid(body):
    with pytest.raises(Invalid):
        webhooks.mailgun_events(body, {})


# --- all four: size, and no input makes anything but a list or a refusal ----------------------


def test_bodies_over_one_megabyte_are_refused_with_413(rsa_key, ec_key, fetch):
    big = b"[" + b" " * (1024 * 1024) + b"]"
    calls: list[Callable[[], object]] = [
        lambda: webhooks.ses_events(big, fetch_certificate=fetch),
        lambda: webhooks.sendgrid_events(big, sendgrid_headers(ec_key, big)),
        lambda: webhooks.postmark_events(big, basic(POSTMARK_USER, POSTMARK_PASSWORD)),
        lambda: webhooks.mailgun_events(big, {}),
    ]
    for call in calls:
        with pytest.raises(AppError) as caught:
            call()
        assert caught.value.status_code == 413
    assert fetch.calls == []


ODD_VALUES: list[Any] = [None, 0, -1, 10**30, 1.5, float("nan"), True, "", "x\x00\ud800y",
                         "9" * 5000, [], {}, [1, "a"], {"a": {"b": []}}]


def mutations(value: Any) -> Iterator[Any]:
    """`value` with each part in turn replaced by each odd value."""
    yield from ODD_VALUES
    if isinstance(value, dict):
        for key, part in value.items():
            for changed in mutations(part):
                yield {**value, key: changed}
    elif isinstance(value, list):
        for i, part in enumerate(value):
            for changed in mutations(part):
                yield [*value[:i], changed, *value[i + 1:]]


def assert_sane(events: list[BounceEvent]) -> None:
    for event in events:
        assert event.kind in ("hard", "soft", "policy", "complaint", "delayed", "ignored")
        for text in (event.recipient, event.status, event.diagnostic, event.message_id,
                     *event.verp_addresses):
            assert text is None or isinstance(text, str)
            if text is not None:
                assert "\x00" not in text
                text.encode("utf-8")  # storable: no lone surrogate
        assert event.occurred_at is None or event.occurred_at.tzinfo is not None


def only_lists_or_refusals(call: Callable[[], list[BounceEvent]]) -> None:
    try:
        events = call()
    except AppError as exc:
        assert 400 <= exc.status_code < 500
    else:
        assert isinstance(events, list)
        assert_sane(events)


def test_ses_never_fails_on_odd_payloads(rsa_key, fetch):
    for ses in [*mutations(ses_bounce()), *mutations(ses_complaint())]:
        body = sns_body(sns_notification(ses), rsa_key)
        only_lists_or_refusals(lambda b=body: webhooks.ses_events(b, fetch_certificate=fetch))
    for message in mutations(sns_notification(ses_bounce())):
        if isinstance(message, dict) and isinstance(message.get("Type"), str) \
                and message["Type"] in SIGNED:
            body = sns_body(message, rsa_key)
        else:
            body = json.dumps(message).encode()
        only_lists_or_refusals(lambda b=body: webhooks.ses_events(b, fetch_certificate=fetch))


def test_sendgrid_never_fails_on_odd_payloads(ec_key):
    for payload in mutations(copy.deepcopy(SENDGRID_EVENTS[:2] + SENDGRID_EVENTS[4:7])):
        body = json.dumps(payload).encode()
        only_lists_or_refusals(
            lambda b=body: webhooks.sendgrid_events(b, sendgrid_headers(ec_key, b)))


def test_postmark_never_fails_on_odd_payloads():
    headers = basic(POSTMARK_USER, POSTMARK_PASSWORD)
    for payload in mutations(POSTMARK_BOUNCE):
        body = json.dumps(payload).encode()
        only_lists_or_refusals(lambda b=body: webhooks.postmark_events(b, headers))


def test_mailgun_never_fails_on_odd_payloads():
    for event_data in mutations(MAILGUN_FAILED):
        body = mailgun_body(event_data)
        only_lists_or_refusals(lambda b=body: webhooks.mailgun_events(b, {}))
    for payload in mutations(json.loads(mailgun_body(MAILGUN_FAILED))):
        body = json.dumps(payload).encode()
        only_lists_or_refusals(lambda b=body: webhooks.mailgun_events(b, {}))


# --- the default fetch ------------------------------------------------------------------------


def test_the_default_fetch_takes_only_https():
    with pytest.raises(ValueError, match="https"):
        webhooks.https_get("http://sns.us-east-1.amazonaws.com/cert.pem")


def test_the_default_fetch_follows_no_redirect():
    import threading
    import urllib.error
    import urllib.request
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Redirecting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/cert.pem":
                self.send_response(302)
                self.send_header("Location", "/elsewhere.pem")
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        opener = urllib.request.build_opener(webhooks._NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(f"http://127.0.0.1:{server.server_port}/cert.pem", timeout=5)
        assert caught.value.code == 302
    finally:
        server.shutdown()
        server.server_close()


# --- each provider's types mapped onto the same reasons ---------------------------------------


@pytest.mark.parametrize(("bounce_type", "sub_type", "diagnostic", "reason", "kind"), [
    ("Permanent", "General", None, "userunknown", "hard"),
    ("Permanent", "NoEmail", None, "userunknown", "hard"),
    ("Permanent", "Suppressed", None, "userunknown", "hard"),
    ("Permanent", "General", "smtp; 550 5.7.1 Client host blocked using zen.spamhaus.org",
     "blocked", "policy"),
    ("Transient", "MailboxFull", None, "mailboxfull", "soft"),
    ("Transient", "MessageTooLarge", None, "mesgtoobig", "policy"),
    ("Transient", "ContentRejected", None, "contenterror", "policy"),
    ("Transient", "General", "smtp; 421 4.7.0 Too many connections, slow down", "toomanyconn",
     "soft"),
    ("Undetermined", "Undetermined", None, "undefined", "soft"),
])
def test_ses_subtypes_become_reasons(rsa_key, fetch, bounce_type, sub_type, diagnostic, reason,
                                     kind):
    recipient: dict[str, Any] = {"emailAddress": "a@example.com"}
    if diagnostic:
        recipient["diagnosticCode"] = diagnostic
    ses = ses_bounce(bounce_type, [recipient])
    ses["bounce"]["bounceSubType"] = sub_type
    [event] = webhooks.ses_events(sns_body(sns_notification(ses), rsa_key),
                                  fetch_certificate=fetch)
    assert (event.reason, event.kind) == (reason, kind)


def test_ses_complaints_are_feedback_and_not_spam_is_nothing(rsa_key, fetch):
    [event] = webhooks.ses_events(sns_body(sns_notification(ses_complaint()), rsa_key),
                                  fetch_certificate=fetch)
    assert (event.reason, event.kind) == ("feedback", "complaint")
    not_spam = ses_complaint()
    not_spam["complaint"]["complaintFeedbackType"] = "not-spam"
    assert webhooks.ses_events(sns_body(sns_notification(not_spam), rsa_key),
                               fetch_certificate=fetch) == []


def test_sendgrid_types_become_reasons(ec_key):
    body = json.dumps(SENDGRID_EVENTS).encode()
    events = webhooks.sendgrid_events(body, sendgrid_headers(ec_key, body))
    assert [(e.recipient, e.reason) for e in events] == [
        ("hard@example.com", "userunknown"),
        ("blocked@example.com", "policyviolation"),  # "rejected by policy", status 5.7.1
        ("later@example.com", "blocked"),            # SendGrid's own "blocked", no words
        ("nostatus@example.com", "userunknown"),     # "unknown recipient"
        ("dropped@example.com", "userunknown"),      # a drop of an address that bounced
        ("angry@example.com", "feedback"),
    ]


@pytest.mark.parametrize(("bounce_type", "details", "reason", "kind"), [
    ("HardBounce", "", "userunknown", "hard"),
    ("BadEmailAddress", "", "userunknown", "hard"),
    ("SoftBounce", "", "undefined", "soft"),
    ("SoftBounce", "552 5.2.2 mailbox full", "mailboxfull", "soft"),
    ("DnsError", "", "networkerror", "soft"),
    ("Blocked", "", "blocked", "policy"),
    ("DMARCPolicy", "", "authfailure", "policy"),
    ("SpamNotification", "", "spamdetected", "policy"),
    ("VirusNotification", "", "virusdetected", "policy"),
    ("HardBounce", "550 5.7.1 Unroutable sender address", "rejected", "policy"),
    ("SpamComplaint", "", "feedback", "complaint"),
])
def test_postmark_types_become_reasons(bounce_type, details, reason, kind):
    payload = {**POSTMARK_BOUNCE, "Type": bounce_type, "Details": details, "Description": ""}
    [event] = webhooks.postmark_events(json.dumps(payload).encode(),
                                       basic(POSTMARK_USER, POSTMARK_PASSWORD))
    assert (event.reason, event.kind) == (reason, kind)


@pytest.mark.parametrize(("changes", "reason", "kind"), [
    ({}, "userunknown", "hard"),
    ({"reason": "espblock", "delivery-status": {"code": 550, "message": ""}}, "blocked",
     "policy"),
    ({"reason": "suppress-bounce", "delivery-status": {"code": 605, "description": ""}},
     "userunknown", "hard"),
    ({"delivery-status": {"code": 552, "enhanced-code": "5.2.2",
                          "message": "5.2.2 mailbox full"}}, "mailboxfull", "soft"),
    ({"severity": "temporary", "delivery-status": {"code": 421, "message": "try later"}},
     "undefined", "soft"),
    ({"event": "complained"}, "feedback", "complaint"),
])
def test_mailgun_reasons(changes, reason, kind):
    [event] = webhooks.mailgun_events(mailgun_body({**MAILGUN_FAILED, **changes}), {})
    assert (event.reason, event.kind) == (reason, kind)
