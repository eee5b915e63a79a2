"""DKIM signatures (RFC 6376, relaxed/relaxed) for every message Missive sends.

dkimpy verifies in the tests. The signature itself is made here with `cryptography` (OpenSSL):
dkimpy's RSA is Python's own big-integer arithmetic, about 8 ms a message against about 0.3 ms
through OpenSSL, which is the difference between a hundred and thousands of signed messages a
second. An optional second signature uses Ed25519-SHA256 (RFC 8463).

Canonicalisation follows dkimpy's rules byte for byte (the tests compare them, on random bodies
too) but not its code for the common case: its regular expressions match every single space and
run once per header field, which measured a millisecond per 30 KB body and about 100 µs per
copy's header block; here plain bytes operations do it, and dkimpy's helpers only take the rare
folded field, and its parser any header block that is not plain CRLF-ended "name: value" lines.

Keys are loaded once per process (`signer()`). Canonical fields are remembered by their raw
bytes, so the fields that are the same in every copy of an issue (From, Subject, Date, List-Id,
MIME-Version, Content-Type…) are canonicalised once per issue; only To, Message-ID and
List-Unsubscribe are canonicalised per reader. The body differs per reader (personal links), so
its hash is per message, but a `BodyPlan` canonicalises an issue's constant body segments once
and only the few short personal values per reader. What is left per copy is about 60 µs beside
the RSA signature's 300 (bench/signing.py prints each step).

Signed headers are oversigned: `h=` names each of them once more than the message has it, so a
copy added in transit (a second List-Unsubscribe, a Reply-To) breaks the signature. No `l=`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from dkim import rfc822_parse
from dkim.canonicalization import (
    compress_whitespace,
    correct_empty_body,
    strip_trailing_lines,
    unfold_header_value,
)

from app.config import ConfigError, get_settings

# The headers a reader (and RFC 8058) relies on; all oversigned.
SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id",
    b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version", b"content-type",
    b"feedback-id", b"auto-submitted",
)
_SIGNED = frozenset(SIGNED_HEADERS)
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


@dataclass(frozen=True)
class DkimKey:
    """One signing key: `algorithm` is b"rsa-sha256" or b"ed25519-sha256"."""

    selector: bytes
    algorithm: bytes
    private_key: RSAPrivateKey | Ed25519PrivateKey

    def __post_init__(self) -> None:
        kind = RSAPrivateKey if self.algorithm == b"rsa-sha256" else Ed25519PrivateKey
        if self.algorithm not in (b"rsa-sha256", b"ed25519-sha256") or not isinstance(
                self.private_key, kind):
            raise ValueError(f"a {type(self.private_key).__name__} cannot sign as "
                             f"{self.algorithm.decode()}")

    def sign(self, data: bytes) -> bytes:
        # By the algorithm, not isinstance (an ABC check, a microsecond or two a copy).
        if self.algorithm == b"ed25519-sha256":
            # RFC 8463: Ed25519 signs the SHA-256 digest of the header data, not the data.
            return cast(Ed25519PrivateKey, self.private_key).sign(hashlib.sha256(data).digest())
        return cast(RSAPrivateKey, self.private_key).sign(data, _PKCS1, _SHA256)


def load_key(path: str, selector: str) -> DkimKey:
    """A PEM private key (RSA or Ed25519) from `path`, or ConfigError saying what is wrong."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM key {path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"the DKIM key {path} is not an unencrypted PEM private key") from exc
    if isinstance(key, RSAPrivateKey):
        if key.key_size < 1024:
            raise ConfigError(f"the DKIM key {path} is shorter than 1024 bits")
        return DkimKey(selector.encode(), b"rsa-sha256", key)
    if isinstance(key, Ed25519PrivateKey):
        return DkimKey(selector.encode(), b"ed25519-sha256", key)
    raise ConfigError(f"the DKIM key {path} is neither RSA nor Ed25519")


# Runs of two or more spaces (found by their literal start, unlike dkimpy's `[\t ]+`, which
# matches every single space and makes 30 KB cost over a millisecond).
_SPACES = re.compile(rb"  +")


def _canonical_lines(data: bytes) -> bytes:
    """Relaxed rules for whole lines inside a body (RFC 6376 3.4.4 a and b, not the end-of-body
    rule): each run of blanks and tabs becomes one space, and none is left before a line end.
    The same bytes as dkimpy's two substitutions: tabs become spaces first (a run stays a run),
    and once runs are single spaces a trailing run is exactly one space before the CRLF."""
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    if b"  " in data:
        data = _SPACES.sub(b" ", data)
    if b" \r\n" in data:
        data = data.replace(b" \r\n", b"\r\n")
    return data


def canonical_body(body: bytes) -> bytes:
    """The relaxed canonical form of a whole body (CRLF line ends), byte for byte as dkimpy's
    `Relaxed.canonicalize_body` computes it."""
    canonical: bytes = correct_empty_body(strip_trailing_lines(_canonical_lines(body)))
    return canonical


class BodyPlan:
    """The relaxed canonical body of a pre-built message, canonicalised once per issue.

    A pre-built message is constant segments with personal values between them; each value
    in the body sits on lines of its own (a line start before it, a soft line break "=" after
    it), so relaxed canonicalisation, which works line by line, can be applied to the
    segments once and to the short values per reader, and the pieces hashed in order.
    """

    def __init__(self, first: int, pieces: list[bytes]) -> None:
        self.first = first  # index of the first value that lies in the body
        self.pieces = pieces  # canonical body segments, one more than the body's values
        self._head = hashlib.sha256(pieces[0])

    @classmethod
    def of(cls, segments: Sequence[bytes], slots: Sequence[str]) -> BodyPlan | None:
        """The plan for `segments` with values for `slots` between them; None when the
        layout does not keep every body value on lines of its own (then sign the whole)."""
        start = next((i for i, seg in enumerate(segments) if b"\r\n\r\n" in seg), None)
        if start is None or len(segments) != len(slots) + 1:
            return None
        if any(slot.startswith("hdr.") for slot in slots[start:]) or not all(
                slot.startswith("hdr.") for slot in slots[:start]):
            return None
        head = segments[start]
        body = [head[head.index(b"\r\n\r\n") + 4:], *segments[start + 1:]]
        if any(seg and not seg.endswith(b"\r\n") for seg in body[:-1]) or any(
                not seg.startswith(b"=") for seg in body[1:]):
            return None
        pieces = [_canonical_lines(seg) for seg in body[:-1]]
        pieces.append(canonical_body(body[-1]))
        return cls(start, pieces)

    def body_hash(self, values: Sequence[bytes]) -> bytes:
        """The base64 SHA-256 of the canonical body, given every slot's value in order."""
        # The constant lines before the first value are hashed once; each copy goes on from a
        # copy of that state.
        digest = self._head.copy()
        for value, piece in zip(values[self.first:], self.pieces[1:], strict=True):
            digest.update(_canonical_lines(value))
            digest.update(piece)
        return base64.b64encode(digest.digest())


# What DKIM tags may hold here without changing under canonicalisation: no white space, no ";".
_TAG_VALUE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]*")


@lru_cache(maxsize=512)
def _folded_value(value: bytes) -> bytes:
    # dkimpy's own rules, for the rare value that is folded or has runs of white space.
    canonical: bytes = compress_whitespace(unfold_header_value(value)).strip()
    return canonical


def _canonical_value(value: bytes) -> bytes:
    """A header value (everything after the colon) in relaxed canonical form, without the CRLF.

    Most values (addresses, URLs, Message-IDs, dates) are one line with single spaces: for
    them the form is the value stripped, which is what dkimpy's unfold-compress-strip gives.
    """
    if b"\n" in value or b"\r" in value or b"\t" in value or b"  " in value:
        return _folded_value(value)
    return value.strip()


def _header_end(message: bytes) -> int:
    end = message.find(b"\r\n\r\n")
    return len(message) if end < 0 else end + 2


_NAME_CHARS = bytes(range(0x21, 0x7F))  # what a field name is made of (RFC 5322 2.2)
# Each raw field seen lately → (its name in lower case, its canonical form if signed, else
# b""). The fields that are the same in every copy of an issue (From, Subject, Date, List-Id,
# the MIME fields…) are worked out once per issue; cleared when full (readers' To fields).
_FIELDS: dict[bytes, tuple[bytes, bytes]] = {}
_FIELDS_MAX = 4096


def _fields(block: bytes) -> list[bytes] | None:
    """The raw fields of a header block ending in CRLF, folds kept (a bare CR or LF stays in
    its field: `_field` refuses it)."""
    if not block.endswith(b"\r\n"):
        return None
    lines = block[:-2].split(b"\r\n")
    if b"\r\n " not in block and b"\r\n\t" not in block:
        return lines
    fields: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields


def _field(raw: bytes) -> tuple[bytes, bytes] | None:
    """(lower-case name, canonical field with CRLF if signed else b"") of one raw field; None
    if it is not a plain "name: value" field on CRLF-ended lines (then dkimpy's parser
    decides, or refuses)."""
    known = _FIELDS.get(raw)
    if known is not None:
        return known
    name, colon, value = raw.partition(b":")
    if not colon or not name or name.translate(None, _NAME_CHARS):
        return None
    unfolded = value.replace(b"\r\n", b"")
    if b"\r" in unfolded or b"\n" in unfolded:
        return None  # a bare line end: dkimpy's parser splits there
    lower = name.lower()
    known = (lower, lower + b":" + _canonical_value(value) + b"\r\n" if lower in _SIGNED
             else b"")
    if len(_FIELDS) >= _FIELDS_MAX:
        _FIELDS.clear()
    _FIELDS[raw] = known
    return known


def _signed_fields(block: bytes) -> dict[bytes, list[bytes]]:
    """The canonical form of each signed field of a header block, by lower-case name, in the
    order they appear; the same fields and forms as dkimpy's parser and canonicalisation."""
    fields = _fields(block)
    if fields is not None:
        present: dict[bytes, list[bytes]] = {}
        for raw in fields:
            known = _field(raw)
            if known is None:
                break
            if known[1]:
                present.setdefault(known[0], []).append(known[1])
        else:
            return present
    # Bare line ends, or a line that is not a plain field: dkimpy's parser (or its error).
    present = {}
    for name, value in _dkimpy_headers(block):
        lower = name.lower()
        if lower in _SIGNED:
            present.setdefault(lower, []).append(
                lower + b":" + _canonical_value(value) + b"\r\n")
    return present


def _dkimpy_headers(block: bytes) -> list[tuple[bytes, bytes]]:
    headers, _ = rfc822_parse(block + b"\r\n")
    return [(bytes(name), bytes(value)) for name, value in headers]


def _fold(tag: bytes, value: bytes, width: int = 72) -> bytes:
    # b= and bh= can be long; white space inside them is ignored by verifiers.
    chunks = [value[i:i + width] for i in range(0, len(value), width)] or [b""]
    return tag + b"\r\n  ".join(chunks)


class DkimSigner:
    """Adds one DKIM-Signature per key to a whole message (CRLF line ends).

    The header fields are canonicalised here rather than through dkimpy's helpers (regular
    expressions per field, and a parse of the whole header block): measured, those took about
    100 µs a copy, a third of the RSA signature itself; this takes a few. The rules are the
    same (tests compare both, and dkimpy verifies every signature in the tests).
    """

    def __init__(self, domain: str, keys: list[DkimKey]) -> None:
        if not keys:
            raise ValueError("a signer needs at least one key")
        self.domain = domain.encode("idna")
        self.keys = keys
        for tag in (self.domain, *(key.selector for key in keys)):
            if not _TAG_VALUE.fullmatch(tag):
                raise ConfigError(f"the DKIM domain or selector {tag.decode()!r} is not a "
                                  f"domain name")
        # Per key, the tags before t=; per h= list, the tags from h= to bh= (folded).
        self._heads = [b"v=1; a=" + key.algorithm + b"; c=relaxed/relaxed; d=" + self.domain
                       + b"; s=" + key.selector + b"; t=" for key in keys]
        self._h_tags: dict[tuple[int, ...], bytes] = {}

    def sign(self, message: bytes, *, body_hash: bytes | None = None,
             timestamp: int | None = None) -> bytes:
        """`message` with its signatures prepended; `body_hash` (base64) when the caller
        has it already (see `BodyPlan`)."""
        end = _header_end(message)
        if body_hash is None:
            body = canonical_body(message[end + 2:])
            body_hash = base64.b64encode(hashlib.sha256(body).digest())
        present = _signed_fields(message[:end])
        # Bottom-up: the last instance of a name is signed first (RFC 6376 5.4.2).
        parts: list[bytes] = []
        counts = []
        for name in SIGNED_HEADERS:
            found = present.get(name)
            if found is None:
                counts.append(0)
            else:
                counts.append(len(found))
                parts.extend(reversed(found))
        signed = b"".join(parts)
        h_tag = self._h_tags.get(tuple(counts))
        if h_tag is None:
            # Once more than present (absent ones too): the empty instance stands for "no
            # further copy", so one added in transit breaks the signature.
            h_list = b":".join(name for name, count in zip(SIGNED_HEADERS, counts, strict=True)
                               for _ in range(count + 1))
            h_tag = self._h_tags.setdefault(tuple(counts), _fold(b"h=", h_list))
        stamp = b"%d" % (int(time.time()) if timestamp is None else timestamp)
        tail = b";\r\n  " + h_tag + b";\r\n  bh=" + body_hash + b";\r\n  b="
        out = []
        for key, start in zip(self.keys, self._heads, strict=True):
            head = start + stamp + tail
            # The signature's own field, b= empty and no final CRLF, ends the signed data. Its
            # relaxed form: every fold (CRLF and two blanks) one space; nothing else in it is
            # white space (the tags' values are checked above, the rest is ours).
            signature = base64.b64encode(key.sign(
                signed + b"dkim-signature:" + head.replace(b"\r\n  ", b" ")))
            out.append(b"DKIM-Signature: " + head + _fold(b"", signature) + b"\r\n")
        out.append(message)
        return b"".join(out)


@lru_cache
def signer() -> DkimSigner | None:
    """The process's signer from MISSIVE_DKIM_*, keys loaded once; None when not configured."""
    settings = get_settings()
    if not (settings.dkim_domain and settings.dkim_selector
            and settings.dkim_private_key_path):
        return None
    keys = [load_key(settings.dkim_private_key_path, settings.dkim_selector)]
    if settings.dkim_ed25519_selector and settings.dkim_ed25519_private_key_path:
        keys.append(load_key(settings.dkim_ed25519_private_key_path,
                             settings.dkim_ed25519_selector))
    return DkimSigner(settings.dkim_domain, keys)


def sign(message: bytes, *, body_hash: bytes | None = None) -> bytes:
    """`message` DKIM-signed when MISSIVE_DKIM_* is set, else unchanged."""
    active = signer()
    return message if active is None else active.sign(message, body_hash=body_hash)
