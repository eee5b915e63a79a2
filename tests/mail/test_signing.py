"""The DKIM signer: dkimpy verifies what it signs, and any change to what a reader relies on
breaks the signature."""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import Relaxed

from app.mail.signing import DkimKey, DkimSigner, canonical_body

DOMAIN = "riverside-water.example.org"

MESSAGE = (
    b"From: Alliance Digest <digest@riverside-water.example.org>\r\n"
    b"Subject: Alliance Digest Vol 3.1: a test issue with a subject long enough to be\r\n"
    b" folded over two lines\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    b"List-Id: Alliance Digest <alliance-digest.riverside-water.example.org>\r\n"
    b"To: Reader <reader@example.org>\r\n"
    b"Message-ID: <1.2.abcdefabcdef@riverside-water.example.org>\r\n"
    b"List-Unsubscribe: <https://news.example.org/u/tok>, <mailto:b@news.example.org>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=\"utf-8\"\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Hello Reader,\r\n"
    b"\r\n"
    b"One paragraph of news, and a link: https://news.example.org/a=\r\n"
    b"rchive\r\n"
)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dns_for(records: dict[bytes, bytes]):  # type: ignore[no-untyped-def]
    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)
    return dns


def rsa_record(key: rsa.RSAPrivateKey) -> bytes:
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def ed25519_record(key: ed25519.Ed25519PrivateKey) -> bytes:
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]:
    return rsa_key(), ed25519.Ed25519PrivateKey.generate()


def test_dkimpy_verifies_the_rsa_signature_and_rejects_changes(keys):
    rsa_private, _ = keys
    signer = DkimSigner(DOMAIN, [DkimKey(b"news2026", b"rsa-sha256", rsa_private)])
    signed = signer.sign(MESSAGE)
    dns = dns_for({b"news2026._domainkey.riverside-water.example.org.": rsa_record(rsa_private)})
    assert dkim.verify(signed, dnsfunc=dns)
    header = signed.split(b"\r\n\r\n")[0].split(b"DKIM-Signature:")[1].split(b"\r\nFrom:")[0]
    assert b"c=relaxed/relaxed" in header and b"a=rsa-sha256" in header
    assert b" l=" not in header and b";l=" not in header

    tampered = {
        "a second List-Unsubscribe on top": signed.replace(
            b"\r\nFrom:", b"\r\nList-Unsubscribe: <https://evil.example/u>\r\nFrom:", 1),
        "a second List-Unsubscribe below": signed.replace(
            b"\r\nMIME-Version:", b"\r\nList-Unsubscribe: <https://evil.example/u>"
                                  b"\r\nMIME-Version:", 1),
        "a changed Subject": signed.replace(b"a test issue", b"a tost issue"),
        "an added Reply-To": signed.replace(
            b"\r\nFrom:", b"\r\nReply-To: thief@evil.example\r\nFrom:", 1),
        "a changed body": signed.replace(b"One paragraph", b"Two paragraph"),
        "a second From": signed.replace(b"\r\nMIME-Version:",
                                        b"\r\nFrom: thief@evil.example\r\nMIME-Version:", 1),
    }
    for what, message in tampered.items():
        assert message != signed, what
        assert not dkim.verify(message, dnsfunc=dns), f"{what} left the signature valid"
    # Relaxed canonicalisation: refolding a header in transit is harmless.
    refolded = signed.replace(b"to be\r\n folded", b"to be \r\n\t folded")
    assert dkim.verify(refolded, dnsfunc=dns)


def test_every_signed_header_is_oversigned(keys):
    signer = DkimSigner(DOMAIN, [DkimKey(b"s", b"rsa-sha256", keys[0])])
    header = signer.sign(MESSAGE).split(b"\r\nFrom:")[0]
    names = header.split(b"h=")[1].split(b";")[0].replace(b"\r\n", b"").replace(b" ", b"")
    counted: dict[bytes, int] = {}
    for name in names.split(b":"):
        counted[name] = counted.get(name, 0) + 1
    # Present once in the message: listed twice. Absent: listed once, so none can be added.
    assert counted == {
        **{name: 2 for name in (
            b"from", b"to", b"subject", b"date", b"message-id", b"list-id", b"list-unsubscribe",
            b"list-unsubscribe-post", b"mime-version", b"content-type")},
        b"reply-to": 1, b"feedback-id": 1, b"auto-submitted": 1,
    }


def test_a_second_ed25519_signature_verifies_too(keys):
    rsa_private, ed_private = keys
    signer = DkimSigner(DOMAIN, [DkimKey(b"rsa1", b"rsa-sha256", rsa_private),
                                 DkimKey(b"ed1", b"ed25519-sha256", ed_private)])
    signed = signer.sign(MESSAGE)
    dns = dns_for({
        b"rsa1._domainkey.riverside-water.example.org.": rsa_record(rsa_private),
        b"ed1._domainkey.riverside-water.example.org.": ed25519_record(ed_private),
    })
    checker = dkim.DKIM(signed)
    assert checker.verify(idx=0, dnsfunc=dns)
    assert checker.verify(idx=1, dnsfunc=dns)
    assert b"a=ed25519-sha256" in signed
    tampered = signed.replace(b"a test issue", b"a tost issue")
    assert not dkim.DKIM(tampered).verify(idx=1, dnsfunc=dns)


@pytest.mark.parametrize("body", [
    b"plain line\r\nanother\r\n",
    b"two  spaces\r\n",
    b"tab\there\r\n",
    b"trailing \r\nline\r\n",
    b"ends with blank lines\r\n\r\n\r\n",
    b"no final line break",
    b"ends with a space ",
    b"",
    b"\r\n",
    b"space then tab \t here\r\n",
    b"tab then spaces\t  here\r\n",
    b"mixed trailing \t \t\r\n \r\n\t\r\n",
    b"a lone\rCR and a lone\nLF  \n",
    b"\t\r\n",
])
def test_body_canonicalisation_matches_dkimpy(body):
    assert canonical_body(body) == Relaxed.canonicalize_body(body)


def test_body_canonicalisation_matches_dkimpy_on_random_bodies():
    import random

    rng = random.Random(11)
    pieces = [b" ", b"  ", b"\t", b"a", b"bc", b"\r\n", b"\r", b"\n", b"=", b"\xc3\xa9"]
    for _ in range(2000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40)))
        assert canonical_body(body) == Relaxed.canonicalize_body(body), body


def test_headers_written_in_any_shape_sign_and_verify(keys):
    """Folded fields, tabs, runs of blanks, encoded words and fields that are not signed: what
    the signer canonicalises itself is what dkimpy's verifier computes."""
    rsa_private, _ = keys
    signer = DkimSigner(DOMAIN, [DkimKey(b"s", b"rsa-sha256", rsa_private)])
    dns = dns_for({b"s._domainkey.riverside-water.example.org.": rsa_record(rsa_private)})
    message = (
        b"From:\tAlliance   Digest <digest@riverside-water.example.org>  \r\n"
        b"Subject:   A subject\t\twith runs \r\n\t and a fold\r\n"
        b"To: =?utf-8?b?WsO2w6sgw5HDusOxZXo=?=\r\n =?utf-8?b?eA==?= <reader@example.org>\r\n"
        b"X-Not-Signed:   anything  at all\r\n"
        b"Date:Mon, 30 Nov 2026 10:00:00 +0000\r\n"
        b"Message-ID:<1.2.abc@riverside-water.example.org>\r\n"
        b"List-Unsubscribe: <https://news.example.org/u/t>,\r\n <mailto:b@news.example.org>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Hello  there, \r\n\r\n"
    )
    signed = signer.sign(message)
    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"and a fold", b"and a fond"), dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"reader@", b"reaper@"), dnsfunc=dns)
    # Refolding and re-spacing in transit is harmless under relaxed canonicalisation.
    assert dkim.verify(signed.replace(b"with runs \r\n\t and", b"with runs and"), dnsfunc=dns)
    # A bare line end splits fields where dkimpy's parser splits them.
    bare = message.replace(b"X-Not-Signed:   anything  at all\r\n",
                           b"X-Not-Signed: x\nReply-To: desk@riverside-water.example.org\r\n")
    assert dkim.verify(signer.sign(bare), dnsfunc=dns)
    assert not dkim.verify(signer.sign(bare).replace(b"desk@", b"dusk@"), dnsfunc=dns)


def test_a_domain_or_selector_with_blanks_is_refused(keys):
    from app.config import ConfigError

    for domain, selector in (("riverside water.example.org", b"s"), (DOMAIN, b"s 1"),
                             (DOMAIN, b"s;x=1")):
        with pytest.raises(ConfigError):
            DkimSigner(domain, [DkimKey(selector, b"rsa-sha256", keys[0])])


def test_the_per_issue_body_plan_hashes_what_dkimpy_would(keys):
    """Segments canonicalised once per issue plus each reader's values give the hash of the
    whole copy, for names with runs of blanks, tabs and non-ASCII letters too."""
    import hashlib

    from app.issues.render import (
        NewsletterInfo,
        Recipient,
        assemble,
        build_message,
        personal_values,
        render_issue,
    )
    from app.issues.schemas import IssueContent
    from app.mail.signing import BodyPlan

    content = IssueContent.model_validate({
        "volume": 1, "number": 2, "subject": "Plan test",
        "stories": [{"headline": "Indented  text", "body": "A list:\n\n- one\n  - two  three"}],
    })
    info = NewsletterInfo(slug="digest", name="Digest", from_name="Digest",
                          from_email="digest@riverside-water.example.org")
    prebuilt = build_message(render_issue(content, info, base_url="https://news.example.org"))
    plan = BodyPlan.of(prebuilt.segments, prebuilt.slots)
    assert plan is not None
    signer = DkimSigner(DOMAIN, [DkimKey(b"s", b"rsa-sha256", keys[0])])
    dns = dns_for({b"s._domainkey.riverside-water.example.org.": rsa_record(keys[0])})
    for name in ("Ada", "Zoë  Ñúñez ", "tab\there", "", "李小龍  x" * 20):
        values = personal_values(prebuilt, Recipient(
            email="reader@example.org", name=name,
            unsubscribe_url="https://news.example.org/u/" + "t" * 150))
        message = assemble(prebuilt, values)
        body = message.split(b"\r\n\r\n", 1)[1]
        expected = base64.b64encode(hashlib.sha256(Relaxed.canonicalize_body(body)).digest())
        assert plan.body_hash(values) == expected
        assert dkim.verify(signer.sign(message, body_hash=plan.body_hash(values)), dnsfunc=dns)
