"""Checks shared by every way data comes in: forms, JSON, CSV rows and the CLI."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, model_validator

from app.errors import Invalid

MAX_EMAIL = 254
MAX_NAME = 200
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 1000
RESERVED_ATTRIBUTES = ("email", "name", "status", "suppressed", "created_at")

# The one rule for text that may reach a header, a filter or a file name: no C0 or C1 control
# character (NUL, CR, LF and NEL U+0085 among them), no DEL, no Unicode line or paragraph
# separator (U+2028, U+2029). Python's str.splitlines() and the email package break lines at
# every one of these, so any of them in a subject or a name breaks a message.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Longer text (a footer, a story, an address) may have line breaks and tabs, never other
# controls: PostgreSQL refuses NUL in text outright.
CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL = CONTROL
_CONTROL_MULTILINE = CONTROL_MULTILINE
CONTROL_MESSAGE = "must not contain line breaks or control characters"


def has_control(text: str) -> bool:
    """True if `text` breaks the one-line rule (see CONTROL)."""
    return CONTROL.search(text) is not None


def normalise_email(raw: str) -> str:
    """A syntactically valid address in its normal form (domain lowercased, IDNA), or Invalid."""
    if not isinstance(raw, str):
        raise Invalid("email must be a string")
    raw = raw.strip()
    if not raw:
        raise Invalid("email is required")
    if len(raw) > MAX_EMAIL:
        raise Invalid(f"email is longer than {MAX_EMAIL} characters")
    if _CONTROL.search(raw):
        raise Invalid("email contains control characters")
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise Invalid(f"invalid email address: {exc}") from exc
    normalized: str = result.normalized
    return normalized


def email_key(email: str) -> str:
    """The case-insensitive identity of an address."""
    return email.lower()


ERASED_KEY_PREFIX = "sha256:"


def erased_key(key: str) -> str:
    """What stands for an erased address on the suppression list: a hash of its key, so the
    address is recognised when it comes back without being stored in the clear."""
    return ERASED_KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def clean_text(value: Any, *, field: str, max_length: int) -> str:
    """A single-line text without control characters, trimmed, at most `max_length`."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string")
    if _CONTROL.search(value):
        raise Invalid(f"{field} {CONTROL_MESSAGE}")
    text = str(value).strip()
    if len(text) > max_length:
        raise Invalid(f"{field} is longer than {max_length} characters")
    return text


def clean_multiline(value: Any, *, field: str, max_length: int) -> str:
    """Text that may span lines (a footer, a postal address) but has no other control characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string")
    if _CONTROL_MULTILINE.search(value):
        raise Invalid(f"{field} must not contain control characters")
    if len(value) > max_length:
        raise Invalid(f"{field} is longer than {max_length} characters")
    return value


def reject_non_finite(value: Any) -> Any:
    """`value` unchanged, or Invalid if a NaN or an infinity hides anywhere in it.

    JSON has neither, but Python's parser reads `NaN`, `Infinity` and `1e999`: stored, they
    break PostgreSQL's JSON; echoed in a validation error, they break the response itself.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid("numbers must be finite (JSON has no NaN or Infinity)")
    if isinstance(value, dict):
        for item in value.values():
            reject_non_finite(item)
    elif isinstance(value, list | tuple):
        for item in value:
            reject_non_finite(item)
    return value


def clean_attributes(value: Any) -> dict[str, Any]:
    """Custom attributes: a flat object of short keys and scalar values."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("attributes must be an object")
    if len(value) > MAX_ATTRIBUTES:
        raise Invalid(f"at most {MAX_ATTRIBUTES} attributes")
    out: dict[str, Any] = {}
    for key, item in value.items():
        key = clean_text(key, field="attribute name", max_length=MAX_ATTRIBUTE_KEY)
        if not key:
            raise Invalid("attribute names must not be empty")
        if key.lower() in RESERVED_ATTRIBUTES:
            # A CSV export has columns of these names already.
            raise Invalid(f"attribute name {key!r} is reserved")
        if isinstance(item, str):
            item = clean_text(item, field=f"attribute {key!r}", max_length=MAX_ATTRIBUTE_VALUE)
        elif item is not None and not isinstance(item, bool | int | float):
            raise Invalid(f"attribute {key!r} must be a string, number, boolean or null")
        elif isinstance(item, float) and not math.isfinite(item):
            raise Invalid(f"attribute {key!r} must be a finite number")
        out[key] = item
    return out


class JsonInput(BaseModel):
    """Base of the JSON bodies the API takes: unknown fields and non-finite numbers refused.

    The NaN check runs before field validation, so that no error echoing a NaN back (which
    cannot be written as JSON, and would be a 500) is ever raised.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _finite_numbers_only(cls, data: Any) -> Any:
        return reject_non_finite(data)
