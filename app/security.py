"""Signed tokens for links in emails, and API token hashing.

Link tokens are itsdangerous signatures (HMAC-SHA1 over the payload and a timestamp, keyed by
MISSIVE_SECRET_KEY with a salt per purpose), so a token for one purpose never passes for another
and nothing in it can be altered or guessed.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.config import get_settings


class TokenInvalid(Exception):
    """A link token that is forged, altered or for another purpose."""


class TokenExpired(TokenInvalid):
    """A genuine link token past its lifetime."""


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().require_secret(), salt=f"missive.{purpose}")


def sign(purpose: str, payload: Any) -> str:
    return _serializer(purpose).dumps(payload)


def unsign(purpose: str, token: str, *, max_age_seconds: int | None = None) -> tuple[Any, datetime]:
    """The payload and signing time of `token`, or TokenInvalid / TokenExpired."""
    if len(token) > 512:
        raise TokenInvalid("token too long")
    try:
        payload, signed_at = _serializer(purpose).loads(
            token, max_age=max_age_seconds, return_timestamp=True
        )
    except SignatureExpired as exc:
        raise TokenExpired(str(exc)) from exc
    except BadSignature as exc:
        raise TokenInvalid(str(exc)) from exc
    if signed_at.tzinfo is None:
        signed_at = signed_at.replace(tzinfo=UTC)
    return payload, signed_at


def new_api_token() -> str:
    return "msv_" + secrets.token_urlsafe(32)


def hash_api_token(token: str) -> str:
    # The token is 256 random bits, so a plain SHA-256 is enough to store it safely.
    return hashlib.sha256(token.encode()).hexdigest()
