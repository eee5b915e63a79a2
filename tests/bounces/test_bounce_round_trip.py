"""A full round trip: send, some readers refused (at once, or by a later report), feed the
reports back in, and the next send skips exactly those readers."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import select

from app.subscribers.models import Suppression
from tests.bounces.dsn import postfix_dsn
from tests.conftest import ROOT
from tests.sending.conftest import SAMPLE_ISSUE, add_readers, wait_done


def _send(client, auth, issue_id) -> dict:
    r = client.post(f"/api/v1/issues/{issue_id}/send", headers=auth, json={})
    assert r.status_code == 202, r.text
    return wait_done(client, auth, r.json()["id"])


def _new_issue(client, auth, number: int) -> int:
    r = client.post("/api/v1/issues", headers=auth, json={**SAMPLE_ISSUE, "number": number,
                                                           "subject": f"Issue {number}"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_bounces_fed_back_make_the_next_send_skip_those_readers(
        client, auth, issue, sink, workers, db, test_env):
    addresses = add_readers(40)
    refused_now = addresses[5]  # the server refuses it during the send
    sink.inbox.reject[refused_now] = f"550 5.1.1 <{refused_now}>: Recipient address rejected"
    workers.start(1)
    first = _send(client, auth, issue)
    assert (first["sent"], first["failed"]) == (39, 1)

    # Later, the receiving MTA reports two more as dead and one mailbox as full.
    by_rcpt = {m["To"].addresses[0].addr_spec: (mail_from, m) for (mail_from, _), m in
               zip(sink.envelopes, sink.inbox.wait_for(39), strict=True)}
    dead = [addresses[10], addresses[20]]
    full = addresses[30]
    reports = [
        postfix_dsn(to=by_rcpt[a][0], recipient=a, status="5.1.1",
                    diagnostic="550 5.1.1 User unknown", original=by_rcpt[a][1]) for a in dead
    ] + [postfix_dsn(to=by_rcpt[full][0], recipient=full, status="5.2.2",
                     diagnostic="552 5.2.2 Mailbox full", original=by_rcpt[full][1])]
    # One through the API, the others as an MTA pipe would hand them to the CLI.
    r = client.post("/api/v1/bounces", headers={**auth, "content-type": "message/rfc822"},
                    content=reports[0])
    assert r.status_code == 200, r.text
    assert r.json()["actions"] == ["suppressed"]
    for raw in reports[1:]:
        done = subprocess.run([sys.executable, "-m", "app.cli", "bounces", "ingest", "-"],
                              input=raw, env={**__import__("os").environ, **test_env},
                              cwd=ROOT, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr

    report = client.get(f"/api/v1/sends/{first['id']}", headers=auth).json()
    assert report["hard_bounces"] == 3  # two reported, one refused during the send
    assert report["soft_bounces"] == 1
    assert report["bounced"] == 3  # delivered-then-bounced rows: two hard, one soft
    listed = client.get("/api/v1/bounces", headers=auth, params={"kind": "hard"}).json()
    assert {b["email"] for b in listed["items"]} == {refused_now, *dead}

    db.expire_all()
    suppressed = set(db.scalars(select(Suppression.email_key)))
    assert suppressed == {refused_now, *dead}  # one full mailbox is not enough to suppress

    sink.inbox.clear()
    second = _send(client, auth, _new_issue(client, auth, 2))
    assert second["total"] == 37 and second["sent"] == 37
    assert set(sink.recipients()) == set(addresses) - {refused_now, *dead}


def test_forged_verp_changes_nothing(client, auth, issue, sink, workers, db):
    addresses = add_readers(3)
    workers.start(1)
    _send(client, auth, issue)
    mail_from, message = sink.envelopes[0][0], sink.inbox.wait_for(1)[0]
    target = message["To"].addresses[0].addr_spec
    local, _, domain = mail_from.partition("@")
    forged_to = local[:-4] + ("0000" if not local.endswith("0000") else "1111") + "@" + domain
    raw = postfix_dsn(to=forged_to, recipient=target, status="5.1.1",
                      diagnostic="550 5.1.1 User unknown", original=message)
    # Also strip the Message-ID fallback's proof by altering it.
    raw = raw.replace(message["Message-ID"].encode(), b"<1.1.AAAAAAAAAAAA@example.org>")
    r = client.post("/api/v1/bounces", headers=auth, content=raw)
    assert r.status_code == 422 and "matches none" in r.json()["detail"]
    db.expire_all()
    assert db.scalars(select(Suppression)).all() == []
    assert len(addresses) == 3
