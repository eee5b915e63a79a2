"""Test copies are reader copies: every header as readers get it, the subject marker only when
the editor wants it, and an unsubscribe link (page, one-click, mailto) that says it is a test."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from app.mail.models import OutboundMessage
from app.subscribers.models import Suppression
from tests.conftest import wait_until
from tests.sending.conftest import SAMPLE_ISSUE


def test_a_test_copy_without_the_marker(client, auth, issue, worker, inbox, db):
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth,
                    json={"test_to": ["editor@example.org"], "test_marker": False})
    assert r.status_code == 202 and r.json()["test_marker"] is False
    (msg,) = inbox.wait_for(1)
    assert msg["Subject"] == SAMPLE_ISSUE["subject"]
    assert re.fullmatch(r"test-\d+:alliance-digest:test:missive", str(msg["Feedback-ID"]))
    mail_from = inbox.messages[0][0]
    # The worker commits the row just after the server took the message.
    row = wait_until(lambda: db.scalars(select(OutboundMessage)).first(), what="the row")
    assert (row.kind, row.email, row.issue_id) == ("test", "editor@example.org", issue)
    assert mail_from.startswith(f"bounces+m{row.id}-")
    assert msg["Message-ID"] == f"<{row.message_id}>"

    url, mailto = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
    page = client.get(url)
    assert page.status_code == 200 and "This is a test copy" in page.text
    assert "nothing was changed" in page.text
    # The mailto lands in the bounce mailbox: recognised, nothing changes.
    subject = mailto.split("subject=", 1)[1].replace("%20", " ")
    raw = (f"From: editor@example.org\r\nTo: bounces@news.example.org\r\n"
           f"Subject: {subject}\r\n\r\n").encode()
    r = client.post("/api/v1/bounces", headers={**auth, "content-type": "message/rfc822"},
                    content=raw)
    assert r.status_code == 200 and r.json()["actions"] == ["test copy: nothing changed"]
    assert db.scalar(select(func.count()).select_from(Suppression)) == 0


def test_a_test_copy_is_marked_by_default(client, auth, issue, worker, inbox):
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth,
                    json={"test_to": ["editor@example.org"]})
    assert r.status_code == 202 and r.json()["test_marker"] is True
    (msg,) = inbox.wait_for(1)
    assert msg["Subject"] == "[Test] " + SAMPLE_ISSUE["subject"]
    assert client.post(f"/api/v1/issues/{issue}/send", headers=auth,
                       json={"test_to": ["x@example.org"], "test_marker": "maybe"}
                       ).status_code == 422
