"""DKIM: with a key configured, every issue email is signed over the headers that matter, and
the signature verifies against the published key."""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.sending.conftest import add_readers, wait_done


def test_issue_emails_are_dkim_signed(client, auth, issue, sink, workers, tmp_path: Path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    add_readers(2)
    workers.start(1, MISSIVE_DKIM_SELECTOR="news2026",
                  MISSIVE_DKIM_DOMAIN="riverside-water.example.org",
                  MISSIVE_DKIM_PRIVATE_KEY_PATH=str(key_file))
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    assert wait_done(client, auth, r.json()["id"])["sent"] == 2
    sink.inbox.wait_for(2)
    raw_messages = list(sink.inbox.raw)
    published = f"v=DKIM1; k=rsa; p={public}".encode()

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        if name == b"news2026._domainkey.riverside-water.example.org.":
            return published
        return None

    for raw in raw_messages:
        signature = raw.split(b"DKIM-Signature:", 1)[1].split(b"\n", 1)[0]
        assert b"d=riverside-water.example.org" in raw and b"s=news2026" in raw
        header_list = raw.split(b" h=", 1)[1].split(b";", 1)[0].replace(b"\r\n", b"")
        signed = {h.strip().lower() for h in header_list.replace(b" ", b"").split(b":")}
        assert {b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"} <= signed
        assert signature
        assert dkim.verify(raw, dnsfunc=dns)
        # Any change to a signed header breaks it.
        tampered = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                               b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click")
        assert tampered != raw and not dkim.verify(tampered, dnsfunc=dns)
