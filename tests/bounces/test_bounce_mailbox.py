"""The bounce mailbox poller against a real IMAP server (Dovecot, started by the test)."""

from __future__ import annotations

import imaplib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.bounces.mailbox import MailboxConfig, poll
from app.config import ConfigError
from app.subscribers.models import Suppression
from tests.bounces.dsn import postfix_dsn
from tests.conftest import free_port
from tests.sending.conftest import add_readers, wait_done

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


@pytest.fixture
def imap_server():
    if not Path(DOVECOT).exists():
        pytest.fail("Dovecot is missing: `make test` installs it (apt-get install dovecot-imapd)")
    # Dovecot's mail processes run as an unprivileged user: they need a folder they can reach
    # (pytest's own tmp_path is private to root).
    tmp_path = Path(tempfile.mkdtemp(prefix="missive-imap-"))
    tmp_path.chmod(0o755)
    uid, gid = ("nobody", "nogroup") if os.getuid() == 0 else (os.getuid(), os.getgid())
    port = free_port()
    mail = tmp_path / "mail"
    mail.mkdir()
    mail.chmod(0o777)
    (tmp_path / "run").mkdir()
    conf = tmp_path / "dovecot.conf"
    conf.write_text(f"""
base_dir = {tmp_path}/run
log_path = {tmp_path}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u
first_valid_uid = 1
passdb {{
  driver = static
  args = password=s3cret
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            imaplib.IMAP4("127.0.0.1", port, timeout=2).logout()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                log = (tmp_path / "dovecot.log")
                raise AssertionError("dovecot did not start: " + (
                    log.read_text() if log.exists() else "")) from None
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(tmp_path, ignore_errors=True)


def _append(port: int, raw: bytes) -> None:
    conn = imaplib.IMAP4("127.0.0.1", port)
    conn.login("bounces", "s3cret")
    conn.append("INBOX", None, None, raw)
    conn.logout()


def _folder(port: int, folder: str) -> list[bytes]:
    conn = imaplib.IMAP4("127.0.0.1", port)
    conn.login("bounces", "s3cret")
    typ, _ = conn.select(f'"{folder}"')
    if typ != "OK":
        conn.logout()
        return []
    _, data = conn.uid("SEARCH", "ALL")
    out = []
    for uid in data[0].split():
        _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
        out.append(fetched[0][1])
    conn.logout()
    return out


def test_poller_applies_reports_once_and_sets_aside_the_rest(
        imap_server, client, auth, issue, sink, workers, db):
    addresses = add_readers(5)
    workers.start(1)
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    wait_done(client, auth, r.json()["id"])
    (mail_from, rcpt), message = sink.envelopes[0], sink.inbox.wait_for(5)[0]
    assert rcpt in addresses
    _append(imap_server, postfix_dsn(to=mail_from, recipient=rcpt, status="5.1.1",
                                     diagnostic="550 5.1.1 no such user", original=message))
    _append(imap_server, b"From: friend@example.org\r\nTo: bounces@news.example.org\r\n"
                         b"Subject: hello\r\n\r\nJust saying hello.\r\n")

    config = MailboxConfig.from_url(
        f"imap://bounces:s3cret@127.0.0.1:{imap_server}/INBOX?tls=none&failed=Unprocessed")
    result = poll(config)
    assert (result.processed, result.set_aside) == (1, 1)
    assert "not a bounce" in result.reasons[0]
    db.expire_all()
    assert db.scalars(select(Suppression.email_key)).all() == [rcpt]
    assert _folder(imap_server, "INBOX") == []
    [kept] = _folder(imap_server, "Unprocessed")
    assert b"Just saying hello." in kept
    # Nothing left to do the second time round.
    again = poll(config)
    assert (again.processed, again.set_aside) == (0, 0)


def test_bad_mailbox_urls():
    for url in ("pop3://x@h", "imaps://h/INBOX", "imap://u@h/INBOX?tls=maybe"):
        with pytest.raises(ConfigError):
            MailboxConfig.from_url(url)
    config = MailboxConfig.from_url("imaps://me%40x.org:p%2Fw@mail.example.org/Bounces")
    assert (config.username, config.password.get_secret_value(), config.port, config.folder,
            config.tls) == (
        "me@x.org", "p/w", 993, "Bounces", "ssl")


def test_mailto_unsubscribe_in_the_bounce_mailbox(imap_server, issue, db):
    from app.signup.service import unsubscribe_token
    from app.subscribers.models import Subscription

    add_readers(1)
    sub = db.scalars(select(Subscription)).one()
    token = unsubscribe_token(sub)
    db.commit()
    _append(imap_server, (f"From: reader0000000@example.org\r\nTo: bounces@news.example.org\r\n"
                          f"Subject: unsubscribe {token}\r\n\r\n\r\n").encode())
    _append(imap_server, b"From: x@example.org\r\nTo: bounces@news.example.org\r\n"
                         b"Subject: unsubscribe not-a-real-token-at-all\r\n\r\n\r\n")
    result = poll(MailboxConfig.from_url(
        f"imap://bounces:s3cret@127.0.0.1:{imap_server}/INBOX?tls=none"))
    assert (result.processed, result.set_aside) == (1, 1)
    db.expire_all()
    assert db.scalars(select(Subscription.status)).one() == "unsubscribed"
