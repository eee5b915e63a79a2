"""Every kind of mail Missive sends — confirmation, welcome, test copy, issue copy — leaves the
same way: through a real SMTP server, DKIM-signed (RSA and Ed25519) over the headers a reader
relies on, from a VERP address tied to a stored record, with the standard headers; a bounce of
any of them suppresses the address, and the one-click unsubscribe works wherever advertised."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select

from app.subscribers.models import Subscriber, Subscription, Suppression
from tests.bounces.dsn import postfix_dsn
from tests.conftest import wait_until
from tests.sending.conftest import Sink, Workers, add_readers, wait_done

DOMAIN = "riverside-water.example.org"
VERP = re.compile(r"^bounces\+m?[0-9]+-[0-9a-f]{16}@news\.example\.org$")
SPAMASSASSIN = shutil.which("spamassassin")


class Mail:
    """One message as the SMTP server received it."""

    def __init__(self, kind: str, mail_from: str, rcpt: str, raw: bytes) -> None:
        self.kind, self.mail_from, self.rcpt, self.raw = kind, mail_from, rcpt, raw
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.msg = parsed

    def one_click_url(self) -> str:
        header = str(self.msg["List-Unsubscribe"])
        return re.findall(r"<(https://[^>]+)>", header)[0]


def _keys(folder: Path) -> tuple[dict[str, str], dict[bytes, bytes]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    (folder / "rsa.pem").write_bytes(rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (folder / "ed.pem").write_bytes(ed_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    rsa_public = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ed_public = ed_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)
    env = {"MISSIVE_DKIM_SELECTOR": "rsa2026", "MISSIVE_DKIM_DOMAIN": DOMAIN,
           "MISSIVE_DKIM_PRIVATE_KEY_PATH": str(folder / "rsa.pem"),
           "MISSIVE_DKIM_ED25519_SELECTOR": "ed2026",
           "MISSIVE_DKIM_ED25519_PRIVATE_KEY_PATH": str(folder / "ed.pem")}
    dns = {f"rsa2026._domainkey.{DOMAIN}.".encode():
           b"v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_public),
           f"ed2026._domainkey.{DOMAIN}.".encode():
           b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_public)}
    return env, dns


def _arrived(sink: Sink, rcpt: str, kind: str) -> Mail:
    def find() -> Mail | None:
        with sink.inbox.lock:
            for (mail_from, rcpts, _), raw in zip(sink.inbox.messages, sink.inbox.raw,
                                                  strict=True):
                if rcpt in rcpts:
                    return Mail(kind, mail_from, rcpt, raw)
        return None
    found = wait_until(find, timeout=60, what=f"the {kind} mail to {rcpt}")
    assert isinstance(found, Mail)
    return found


@pytest.fixture
def every_kind(client: Any, auth: dict[str, str], issue: int, sink: Sink, workers: Workers,
               tmp_path: Path) -> tuple[dict[str, Mail], dict[bytes, bytes]]:
    """One mail of each kind, sent by a worker with DKIM keys configured."""
    env, dns = _keys(tmp_path)
    workers.start(1, **env)
    signup = {"email": "dead.typo@example.org", "name": "Zoë Typo"}
    assert client.post("/subscribe/alliance-digest", json=signup).status_code == 202
    confirmation = _arrived(sink, "dead.typo@example.org", "confirmation")

    assert client.post("/subscribe/alliance-digest",
                       json={"email": "new.reader@example.org"}).status_code == 202
    first = _arrived(sink, "new.reader@example.org", "confirmation")
    link = re.search(r"https://news\.example\.org/confirm/\S+", first.msg.get_body(
        ("plain",)).get_content())  # type: ignore[union-attr]
    assert link is not None
    assert client.post(link.group()).status_code == 200
    wait_until(lambda: len(sink.inbox.to("new.reader@example.org")) == 2, timeout=60,
               what="the welcome mail")
    welcome = Mail("welcome", *next(
        (f, "new.reader@example.org", raw) for (f, rcpts, m), raw
        in zip(sink.inbox.messages, sink.inbox.raw, strict=True)
        if "new.reader@example.org" in rcpts and str(m["Subject"]).startswith("Welcome")))

    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth,
                    json={"test_to": ["editor@example.org"]})
    assert r.status_code == 202, r.text
    test = _arrived(sink, "editor@example.org", "test")

    (reader,) = add_readers(1)
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    # The reader and the new subscriber who confirmed above.
    assert wait_done(client, auth, r.json()["id"], workers=workers)["sent"] == 2
    copy = _arrived(sink, reader, "issue")
    return {m.kind: m for m in (confirmation, welcome, test, copy)}, dns


def test_every_kind_leaves_the_same_way(every_kind, client, auth, db):
    mails, records = every_kind
    _check_signed_and_headed(mails, records)
    _check_one_click(mails, client, db)
    _check_bounces(mails, client, auth, db)


def _check_signed_and_headed(mails: dict[str, Mail], records: dict[bytes, bytes]) -> None:

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    for kind, mail in mails.items():
        msg, raw = mail.msg, mail.raw
        # Both signatures verify: RSA-SHA256 and Ed25519-SHA256, relaxed/relaxed, d= the From
        # domain (DMARC alignment), no l=.
        checker = dkim.DKIM(raw)
        assert checker.verify(idx=0, dnsfunc=dns), kind
        assert checker.verify(idx=1, dnsfunc=dns), kind
        signatures = msg.get_all("DKIM-Signature")
        assert len(signatures) == 2
        assert all(f"d={DOMAIN}" in s and "c=relaxed/relaxed" in s for s in signatures)
        assert not any(re.search(r"(^|;)\s*l=", s) for s in signatures), kind

        # What a reader relies on cannot be changed or added to.
        for what, tampered in {
            "an added List-Unsubscribe": b"List-Unsubscribe: <https://evil.example/u>\r\n"
                                         + raw,
            "a changed Subject": raw.replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1),
            "an added Reply-To": b"Reply-To: <thief@evil.example>\r\n" + raw,
            "a changed Reply-To": raw.replace(b"\r\nReply-To: editors@", b"\r\nReply-To: x", 1),
        }.items():
            assert tampered != raw
            assert not dkim.verify(tampered, dnsfunc=dns), f"{kind}: {what} kept DKIM valid"

        # The envelope sender is a VERP address tied to a stored record.
        assert VERP.match(mail.mail_from), (kind, mail.mail_from)
        for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "Feedback-ID"):
            assert msg[name], f"{kind} has no {name}"
        assert msg["List-Id"] == f"Alliance Digest <alliance-digest.{DOMAIN}>"
        assert str(msg["Feedback-ID"]).endswith(f":alliance-digest:{kind}:missive")
        assert msg["Reply-To"] == f"editors@{DOMAIN}"
        if kind in ("confirmation", "welcome"):
            assert msg["Auto-Submitted"] == "auto-generated"
        else:
            assert msg["Auto-Submitted"] is None
        if kind == "confirmation":
            assert msg["List-Unsubscribe"] is None  # nothing to leave yet
        else:
            unsubscribe = str(msg["List-Unsubscribe"])
            assert re.fullmatch(r"<https://news\.example\.org/u/[^>]+>, <mailto:bounces@"
                                r"news\.example\.org\?subject=unsubscribe%20[^>]+>", unsubscribe)
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(mails["test"].msg["Subject"]).startswith("[Test] Alliance Digest Vol 3.1")
    assert not str(mails["issue"].msg["Subject"]).startswith("[Test]")


def _check_one_click(mails: dict[str, Mail], client: Any, db: Any) -> None:
    """The RFC 8058 POST as Gmail sends it: form-encoded, no cookie, 200 without redirect."""
    for kind in ("welcome", "test", "issue"):
        url = mails[kind].one_click_url()
        client.cookies.clear()
        r = client.post(url, content=b"List-Unsubscribe=One-Click", follow_redirects=False,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200, (kind, r.text)
        page = client.get(url)
        assert page.status_code == 200
        if kind == "test":
            assert "test copy" in page.text and "nothing was changed" in page.text
    for address in ("new.reader@example.org", mails["issue"].rcpt):
        status = db.scalar(select(Subscription.status).join(Subscriber).where(
            Subscriber.email_key == address))
        assert status == "unsubscribed", address


def _check_bounces(mails: dict[str, Mail], client: Any, auth: dict[str, str], db: Any) -> None:
    """A DSN for each, fed back in, suppresses the address (a dead address typed into the
    sign-up form too). The confirmation's report reaches the plain bounce address, its VERP
    part lost: its stored Message-ID matches it."""
    headers = {**auth, "content-type": "message/rfc822"}
    mail = mails["confirmation"]
    forged = message_from_bytes(mail.raw, policy=policy.default)
    report = postfix_dsn(to="bounces@news.example.org", recipient=mail.rcpt, status="5.1.1",
                         diagnostic="550 5.1.1 User unknown", original=mail.msg)
    r = client.post("/api/v1/bounces", headers=headers, content=report)
    assert r.status_code == 200 and r.json()["actions"] == ["suppressed"], r.text
    for kind, mail in mails.items():
        report = postfix_dsn(to=mail.mail_from, recipient=mail.rcpt, status="5.1.1",
                             diagnostic="550 5.1.1 User unknown", original=mail.msg)
        r = client.post("/api/v1/bounces", headers=headers, content=report)
        assert r.status_code == 200, (kind, r.text)
        expected = ["duplicate"] if kind == "confirmation" else ["suppressed"]
        assert r.json()["actions"] == expected, kind
        assert db.scalar(select(Suppression.reason).where(
            Suppression.email_key == mail.rcpt.lower())) == "bounced", kind

    # A made-up Message-ID of the same shape matches nothing and changes nothing.
    del forged["Message-ID"]
    forged["Message-ID"] = f"<m1.0000000000000000@{DOMAIN}>"
    assert isinstance(forged, EmailMessage)
    report = postfix_dsn(to="bounces@news.example.org", recipient="someone@example.org",
                         status="5.1.1", diagnostic="550 5.1.1 User unknown", original=forged)
    assert client.post("/api/v1/bounces", headers=headers, content=report).status_code == 422
    assert db.scalar(select(Suppression).where(
        Suppression.email_key == "someone@example.org")) is None




@pytest.mark.skipif(SPAMASSASSIN is None, reason="spamassassin is not installed (make test "
                                                 "installs it)")
def test_spamassassin_scores_every_kind_below_one(every_kind):
    mails, _ = every_kind
    for kind, mail in mails.items():
        # Local tests only (-L): no DNS blocklists, no network.
        done = subprocess.run([str(SPAMASSASSIN), "-L", "-t"], input=mail.raw,
                              capture_output=True, timeout=300)
        out = done.stdout.decode(errors="replace")
        match = re.search(r"X-Spam-Status: \w+, score=(-?[0-9.]+)", out)
        assert match, done.stderr.decode(errors="replace")[-2000:]
        report = out.split("Content analysis details:")[-1][:3000]
        print(f"spamassassin -L: {kind} scores {match[1]}")  # shown with pytest -s
        assert float(match[1]) < 1.0, f"{kind} scores {match[1]}:\n{report}"
