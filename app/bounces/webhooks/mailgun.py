"""Mailgun's webhooks: an HMAC of a timestamp and a one-time token, the token spent once."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from app.bounces.events import BounceEvent
from app.bounces.reasons import Reason, Verdict
from app.bounces.webhooks.common import (
    MAX_AHEAD_SECONDS,
    TOKEN_TTL_SECONDS,
    WebhookRefused,
    as_address,
    as_message_id,
    as_object,
    clean_text,
    first_status,
    fresh,
    load_json,
    smtp_code,
    unix_time,
    utf8,
    verdict,
)
from app.config import get_settings
from app.db import dialect_insert, get_engine, utcnow
from app.errors import Invalid
from app.ratelimit import RateCounter, redis_client

_MAILGUN_NOT_BOUNCES = {"suppress-unsubscribe", "suppress-complaint"}
# What a permanent failure stands for, by Mailgun's own reason, when the reply says nothing.
_MAILGUN_REASONS: dict[str, Reason] = {"espblock": "blocked", "suppress-bounce": "userunknown",
                                       "bounce": "userunknown", "generic": "undefined",
                                       "old": "expired"}


def mailgun_events(body: bytes, headers: Mapping[str, str]) -> list[BounceEvent]:
    """Events in a Mailgun webhook post (JSON, `signature` and `event-data`).

    The signature is an HMAC-SHA256 of timestamp + token with MISSIVE_MAILGUN_SIGNING_KEY. It
    does not cover the event, so a timestamp older than ten minutes is refused and each token is
    accepted once. The headers are not used: Mailgun signs in the body.
    """
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise Invalid("a Mailgun webhook post is a JSON object")
    key = get_settings().mailgun_signing_key.get_secret_value()
    if not key:
        raise WebhookRefused("Mailgun webhooks are not configured (MISSIVE_MAILGUN_SIGNING_KEY)")
    signature = as_object(payload.get("signature"))
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not (isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)
            and token):
        raise WebhookRefused("the Mailgun signature is missing")
    expected = hmac.new(utf8(key), utf8(timestamp + token), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(utf8(expected), utf8(given.lower())):
        raise WebhookRefused("the Mailgun signature does not verify")
    if not fresh(timestamp, ahead=MAX_AHEAD_SECONDS):
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
    key = f"mailgun-token:{hashlib.sha256(utf8(token)).hexdigest()}"
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
    name = clean_text(data.get("event"))
    delivery = as_object(data.get("delivery-status"))
    reply = clean_text(delivery.get("message"))
    description = clean_text(delivery.get("description"))
    if name == "failed":
        why = clean_text(data.get("reason"))
        if why in _MAILGUN_NOT_BOUNCES:
            return []
        code = smtp_code(delivery.get("code"))
        # Mailgun calls a failure permanent once it stops retrying, even after a 4xx reply.
        temporary = (clean_text(data.get("severity")) != "permanent"
                     or (code is not None and code < 500))
        fallback: Reason = "undefined" if temporary else _MAILGUN_REASONS.get(
            why or "", "userunknown")
        found = verdict(status=first_status(delivery.get("enhanced-code")),
                        diagnostic=" ".join(t for t in (reply, description) if t),
                        temporary=temporary, fallback=fallback)
        diagnostic = reply or description or why or "failed"
    elif name == "complained":
        found = Verdict(reason="feedback", kind="complaint", status=None)
        diagnostic = "complaint"
    else:
        return []
    sender = as_address(as_object(data.get("envelope")).get("sender"))
    headers = as_object(as_object(data.get("message")).get("headers"))
    return [BounceEvent(
        kind=found.kind, recipient=as_address(data.get("recipient")), status=found.status,
        diagnostic=diagnostic, source="mailgun", verp_addresses=(sender,) if sender else (),
        message_id=as_message_id(headers.get("message-id")),
        occurred_at=unix_time(data.get("timestamp")), reason=found.reason,
    )]
