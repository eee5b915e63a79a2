"""VERP envelope senders: each message's bounces come back to an address naming it.

`bounces+1234-9f2c0a5b7e1d@news.example.org` names delivery 1234 of a send's ledger;
`bounces+m56-…@…` names transactional message 56 (a confirmation, a welcome, a test copy). The
HMAC lets a bounce be matched to what it is about and refuses a forged one (a guessed id).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from app.config import get_settings

_TAG = re.compile(
    r"^(?P<local>[^+@]+)\+(?P<kind>m?)(?P<id>[0-9]+)-(?P<mac>[0-9a-f]{16})@(?P<domain>.+)$")


def _mac(tag: str) -> str:
    key = get_settings().require_secret().encode()
    return hmac.new(key, f"verp:{tag}".encode(), hashlib.sha256).hexdigest()[:16]


def _address(tag: str) -> str:
    local, _, domain = get_settings().bounce_address.rpartition("@")
    return f"{local}+{tag}-{_mac(tag)}@{domain}"


def envelope_sender(delivery_id: int) -> str:
    """The Return-Path for one delivery of a send, built on MISSIVE_BOUNCE_ADDRESS."""
    return _address(str(delivery_id))


def message_sender(message_id: int) -> str:
    """The Return-Path for one transactional message (its `messages` row id)."""
    return _address(f"m{message_id}")


def _parse(address: str, kind: str) -> int | None:
    match = _TAG.match(address.strip().strip("<>").lower())
    if match is None or match["kind"] != kind:
        return None
    local, _, domain = get_settings().bounce_address.lower().rpartition("@")
    if match["local"] != local or match["domain"] != domain:
        return None
    value = int(match["id"])
    if value > 2**63 - 1 or not hmac.compare_digest(match["mac"], _mac(f"{kind}{value}")):
        return None
    return value


def delivery_id(address: str) -> int | None:
    """The delivery an envelope address names, or None if it is not one of ours or forged."""
    return _parse(address, "")


def message_record_id(address: str) -> int | None:
    """The transactional message an envelope address names, or None (not ours, forged)."""
    return _parse(address, "m")
