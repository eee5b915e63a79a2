"""One rule for text that reaches a header, a filter or a file name: C0/C1 controls (NUL, CR,
LF, NEL) and U+2028/U+2029 are refused with a clear 422 wherever they come in."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from pydantic import SecretStr

from app.config import get_settings
from tests.bounces.test_bounce_webhook_routes import MAILGUN_KEY, _mailgun
from tests.conftest import ROOT

BAD = ["\x00", "\x85", "\u2028", "\u2029", "\r\n", "\x1b", "\x9b"]
IDS = ["NUL", "NEL", "LS", "PS", "CRLF", "ESC", "CSI"]


@pytest.mark.parametrize("char", BAD, ids=IDS)
def test_api_bodies(client, auth, newsletter, char):
    checks = [
        client.post("/api/v1/issues", headers=auth, json={
            "newsletter": "alliance-digest", "subject": f"Vol 9{char}Bcc: x",
            "stories": [{"headline": "A", "body": "B"}]}),
        client.patch("/api/v1/newsletters/alliance-digest", headers=auth,
                     json={"name": f"Digest{char}"}),
        client.post("/api/v1/subscribers", headers=auth,
                    json={"email": "a@example.org", "name": f"Ann{char}"}),
    ]
    for r in checks:
        assert r.status_code == 422, (r.request.url, r.text)
        assert "control characters" in str(r.json()["detail"])
    # The public sign-up form speaks to readers, not programmers.
    r = client.post("/subscribe/alliance-digest",
                    json={"email": "b@example.org", "name": f"Bo{char}"})
    assert r.status_code == 422, r.text
    assert r.json()["fields"]["name"].startswith("Please write your name on one line")


@pytest.mark.parametrize("char", BAD, ids=IDS)
def test_query_and_path(client, auth, newsletter, char):
    from urllib.parse import quote

    enc = quote(char)
    for url in (f"/api/v1/bounces?email=x{enc}", f"/api/v1/subscribers?q=x{enc}",
                f"/api/v1/issues?newsletter=x{enc}", f"/api/v1/subscribers?cursor={enc}",
                f"/subscribe/alliance{enc}digest", f"/archive/x{enc}"):
        r = client.get(url, headers=auth)
        assert r.status_code == 422, (url, r.status_code, r.text)
        detail = r.json()["detail"]
        assert detail[0]["type"] == "control_character"
        assert "control characters" in detail[0]["msg"]


def test_csv_rows_are_refused_by_line(client, auth, newsletter):
    body = ("email,name\nok@example.org,Fine\nnel@example.org,Bad\x85Name\n"
            "ls@example.org,Bad\u2028Name\n").encode()
    r = client.post("/api/v1/subscribers/import?newsletter=alliance-digest", content=body,
                    headers={**auth, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["created"] == 1
    assert [e["line"] for e in report["errors"]] == [3, 4]
    assert all("control characters" in e["detail"] for e in report["errors"])


def test_cli_refuses_with_one_line(test_env):
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "token", "create", "ci\x85bot"],
        env={**os.environ, **test_env}, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "control characters" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_webhook_address(client, newsletter, monkeypatch):
    monkeypatch.setattr(get_settings(), "mailgun_signing_key", SecretStr(MAILGUN_KEY))
    event = {"event": "failed", "severity": "permanent", "recipient": "a\x00@example.org",
             "timestamp": time.time(), "message": {"headers": {"message-id": "x@example.org"}}}
    r = client.post("/webhooks/mailgun", content=_mailgun(event),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "control characters" in r.json()["detail"]


def test_the_one_rule_lives_in_one_place():
    from app import validation
    from app.issues import render, schemas

    assert schemas._CONTROL is validation.CONTROL
    assert render._CONTROL is validation.CONTROL
    for char in BAD:
        assert validation.has_control(f"a{char}b")
    assert not validation.has_control("Ångström – “quoted” 🙂")
