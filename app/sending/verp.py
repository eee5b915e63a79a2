"""VERP envelope senders: each delivery's bounces come back to an address naming it.

`bounces+1234-9f2c0a5b7e1d@news.example.org` carries the delivery id and an HMAC of it, so a
bounce can be matched to its delivery and a forged one (a guessed id) is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from app.config import get_settings

_TAG = re.compile(r"^(?P<local>[^+@]+)\+(?P<id>[0-9]+)-(?P<mac>[0-9a-f]{16})@(?P<domain>.+)$")


def _mac(delivery_id: int) -> str:
    key = get_settings().require_secret().encode()
    return hmac.new(key, f"verp:{delivery_id}".encode(), hashlib.sha256).hexdigest()[:16]


def envelope_sender(delivery_id: int) -> str:
    """The Return-Path for one delivery, built on MISSIVE_BOUNCE_ADDRESS."""
    local, _, domain = get_settings().bounce_address.rpartition("@")
    return f"{local}+{delivery_id}-{_mac(delivery_id)}@{domain}"


def delivery_id(address: str) -> int | None:
    """The delivery an envelope address names, or None if it is not one of ours or forged."""
    match = _TAG.match(address.strip().strip("<>").lower())
    if match is None:
        return None
    local, _, domain = get_settings().bounce_address.lower().rpartition("@")
    if match["local"] != local or match["domain"] != domain:
        return None
    value = int(match["id"])
    if value > 2**63 - 1 or not hmac.compare_digest(match["mac"], _mac(value)):
        return None
    return value
