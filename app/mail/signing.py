"""DKIM signatures (RFC 6376, relaxed/relaxed) for every message Missive sends.

dkimpy does the canonicalisation (its `Relaxed` helpers and header parser) and, in the tests, the
verification. The signature itself is made here with `cryptography` (OpenSSL): dkimpy's RSA is
Python's own big-integer arithmetic, about 8 ms a message against about 0.3 ms through OpenSSL,
which is the difference between a hundred and thousands of signed messages a second. An optional
second signature uses Ed25519-SHA256 (RFC 8463).

Keys are loaded once per process (`signer()`). Relaxed header canonicalisation is cached by the
raw header, so the headers that are the same in every copy of an issue (From, Subject, Date,
List-Id, MIME-Version, Content-Type…) are canonicalised once per issue; only To, Message-ID and
List-Unsubscribe are canonicalised per reader. The body differs per reader (personal links), so
its hash is per message, but a `BodyPlan` canonicalises an issue's constant body segments once
and only the few short personal values per reader.

Signed headers are oversigned: `h=` names each of them once more than the message has it, so a
copy added in transit (a second List-Unsubscribe, a Reply-To) breaks the signature. No `l=`.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from dkim import rfc822_parse
from dkim.canonicalization import Relaxed, compress_whitespace, strip_trailing_whitespace

from app.config import ConfigError, get_settings

# The headers a reader (and RFC 8058) relies on; all oversigned.
SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id",
    b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version", b"content-type",
    b"feedback-id", b"auto-submitted",
)
_SIGNED = frozenset(SIGNED_HEADERS)


@dataclass(frozen=True)
class DkimKey:
    """One signing key: `algorithm` is b"rsa-sha256" or b"ed25519-sha256"."""

    selector: bytes
    algorithm: bytes
    private_key: RSAPrivateKey | Ed25519PrivateKey

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private_key, Ed25519PrivateKey):
            # RFC 8463: Ed25519 signs the SHA-256 digest of the header data, not the data.
            return self.private_key.sign(hashlib.sha256(data).digest())
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


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


def canonical_body(body: bytes) -> bytes:
    """The relaxed canonical form of a whole body (CRLF line ends), as dkimpy computes it.

    For the small transactional mails; issue copies use a `BodyPlan`, made once per issue.
    Bodies already canonical but for their end are recognised by a few substring scans.
    """
    if (b"\t" not in body and b"  " not in body and b" \r\n" not in body
            and body.endswith(b"\r\n") and not body.endswith(b"\r\n\r\n")
            and not body.endswith(b" ") and body != b"\r\n"):
        return body
    canonical: bytes = Relaxed.canonicalize_body(body)
    return canonical


def _canonical_lines(data: bytes) -> bytes:
    # Relaxed rules for lines inside a body: no end-of-body rule. dkimpy's regular
    # expressions cost milliseconds on 30 KB (every single space is a match), so only data
    # that needs them goes through them.
    if b"\t" not in data and b"  " not in data and b" \r\n" not in data:
        return data
    lines: bytes = compress_whitespace(strip_trailing_whitespace(data))
    return lines


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
        pieces.append(Relaxed.canonicalize_body(body[-1]))
        return cls(start, pieces)

    def body_hash(self, values: Sequence[bytes]) -> bytes:
        """The base64 SHA-256 of the canonical body, given every slot's value in order."""
        digest = hashlib.sha256(self.pieces[0])
        for value, piece in zip(values[self.first:], self.pieces[1:], strict=True):
            digest.update(_canonical_lines(value))
            digest.update(piece)
        return base64.b64encode(digest.digest())


@lru_cache(maxsize=2048)
def _canonical_header(name: bytes, value: bytes) -> bytes:
    ((cname, cvalue),) = Relaxed.canonicalize_headers([[name, value]])
    return bytes(cname) + b":" + bytes(cvalue)


def _header_end(message: bytes) -> int:
    end = message.find(b"\r\n\r\n")
    return len(message) if end < 0 else end + 2


def _headers(message: bytes, end: int) -> list[tuple[bytes, bytes]]:
    headers, _ = rfc822_parse(message[:end] + b"\r\n")
    return [(bytes(name), bytes(value)) for name, value in headers]


def _fold(tag: bytes, value: bytes, width: int = 72) -> bytes:
    # b= and bh= can be long; white space inside them is ignored by verifiers.
    chunks = [value[i:i + width] for i in range(0, len(value), width)] or [b""]
    return tag + b"\r\n  ".join(chunks)


class DkimSigner:
    """Adds one DKIM-Signature per key to a whole message (CRLF line ends)."""

    def __init__(self, domain: str, keys: list[DkimKey]) -> None:
        if not keys:
            raise ValueError("a signer needs at least one key")
        self.domain = domain.encode("idna")
        self.keys = keys

    def sign(self, message: bytes, *, body_hash: bytes | None = None,
             timestamp: int | None = None) -> bytes:
        """`message` with its signatures prepended; `body_hash` (base64) when the caller
        has it already (see `BodyPlan`)."""
        end = _header_end(message)
        headers = _headers(message, end)
        if body_hash is None:
            body = canonical_body(message[end + 2:])
            body_hash = base64.b64encode(hashlib.sha256(body).digest())
        # Bottom-up: the last instance of a name is signed first (RFC 6376 5.4.2).
        present: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            lower = name.lower()
            if lower in _SIGNED:
                present.setdefault(lower, []).append(_canonical_header(name, value))
        h_list: list[bytes] = []
        signed = bytearray()
        for name in SIGNED_HEADERS:
            found = present.get(name, [])
            for canonical in reversed(found):
                signed += canonical
            # Once more than present (absent ones too): the empty instance stands for "no
            # further copy", so one added in transit breaks the signature.
            h_list.extend([name] * (len(found) + 1))
        stamp = b"%d" % (int(time.time()) if timestamp is None else timestamp)
        out = bytearray()
        for key in self.keys:
            head = (b"v=1; a=" + key.algorithm + b"; c=relaxed/relaxed; d=" + self.domain
                    + b"; s=" + key.selector + b"; t=" + stamp + b";\r\n  "
                    + _fold(b"h=", b":".join(h_list)) + b";\r\n  "
                    + b"bh=" + body_hash + b";\r\n  b=")
            ((_, own),) = Relaxed.canonicalize_headers([[b"DKIM-Signature", b" " + head]])
            # The signature's own header, b= empty and no final CRLF, ends the signed data.
            signature = base64.b64encode(key.sign(bytes(signed) + b"dkim-signature:"
                                                  + bytes(own)[:-2]))
            out += b"DKIM-Signature: " + head + _fold(b"", signature) + b"\r\n"
        return bytes(out) + message


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
