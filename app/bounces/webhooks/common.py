"""What every provider webhook shares: reading untrusted JSON, times, and the reason rules.

Everything in a payload is untrusted: fields of the wrong type are treated as missing, and text
is cleaned (no NUL, no lone surrogate) before it goes into an event.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from app.bounces.reasons import Reason, Verdict, decide, kind_of, status_code
from app.errors import AppError, Invalid
from app.validation import CONTROL_MESSAGE, has_control

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


def load_json(body: bytes) -> Any:
    check_size(body)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Invalid("the body is not valid JSON") from exc


def check_size(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise AppError(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)


def as_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def object_items(value: Any) -> list[dict[str, Any]]:
    """The objects in a JSON array; anything else in it is skipped."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def clean_text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A string field made safe to store: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()
    return cleaned[:limit] or None


def as_address(value: Any) -> str | None:
    if isinstance(value, str) and has_control(value):
        raise Invalid(f"a recipient address {CONTROL_MESSAGE}")
    text = clean_text(value, 1000)
    if text is None:
        return None
    if text.endswith(">") and "<" in text:  # "Name <addr>"
        text = text[text.rindex("<") + 1 : -1].strip()
    return text.lower() if text and len(text) <= 320 else None


def as_message_id(value: Any) -> str | None:
    text = clean_text(value, 998)
    if text is None:
        return None
    return text.strip("<>").strip() or None


def first_status(*texts: Any) -> str | None:
    """The first RFC 3463 code found in the given fields."""
    for text in texts:
        if isinstance(text, str) and (code := status_code(text)):
            return code
    return None


_SMTP_REPLY = re.compile(r"^\s*([245][0-9][0-9])(?![0-9])")


def smtp_code(value: Any) -> int | None:
    """An SMTP reply code from a number or from the start of a reply text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 200 <= value <= 599 else None
    if isinstance(value, str) and (match := _SMTP_REPLY.match(value)):
        return int(match[1])
    return None


def unix_time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        return None


_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        # Postmark writes seven fractional digits; Python reads at most six.
        parsed = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}


def utf8(text: str) -> bytes:
    # Lone surrogates cannot be what was signed; encoding them anyway makes the check fail.
    return text.encode("utf-8", "surrogatepass")



def fresh(timestamp: str, *, ahead: int = MAX_AGE_SECONDS) -> bool:
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        return False
    age = time.time() - int(timestamp)
    return -ahead <= age <= MAX_AGE_SECONDS



def verdict(*, status: str | None, diagnostic: str | None, temporary: bool | None,
            fallback: Reason = "undefined") -> Verdict:
    """Reason and kind of a provider's failure event.

    The remote server's words and status decide when they say anything; `fallback` is the
    reason the provider's own type stands for (its bounce type has read the same reply, less
    precisely). `temporary` is what the provider says about permanence, None when it does not.
    """
    found = decide(status=status, diagnostic=diagnostic or "", temporary=temporary)
    if found.reason != "undefined" or fallback == "undefined":
        return found
    return Verdict(reason=fallback, kind=kind_of(fallback, temporary=bool(temporary)),
                   status=found.status)
