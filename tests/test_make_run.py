"""`make run` as a newcomer uses it: the embedded default, no server, in a fresh folder.

The test starts `missive quickstart` (what `make run` runs) on a free port in a temporary
folder, with none of the test suite's MISSIVE_* settings, signs up through the public form,
confirms from the mail in the Maildir outbox, and sees the subscriber through the editor API.
"""

from __future__ import annotations

import mailbox
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, wait_until


@pytest.fixture
def embedded(tmp_path: Path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISSIVE_")}
    env["PYTHONPATH"] = str(ROOT)
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "quickstart", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"make run exited early:\n{log.read_text()}")
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=60, what="the embedded server")
        # The worker prints "ready." once it listens on the filesystem broker.
        wait_until(lambda: "ready." in log.read_text(), timeout=30, what="the worker")
        yield base, tmp_path, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _outbox(folder: Path) -> list[mailbox.MaildirMessage]:
    path = folder / "var" / "outbox"
    if not path.exists():
        return []
    box = mailbox.Maildir(str(path), create=False)
    return sorted(box, key=lambda m: m.get_date())


def test_make_run_serves_sign_up_confirm_and_api(embedded):
    base, folder, log = embedded
    output = log.read_text()
    assert f"{base}/subscribe/alliance-digest" in output
    assert str(folder / "var" / "outbox") in output
    token = re.search(r"Editor token\s+(msv_\S+)", output).group(1)

    form = httpx.get(f"{base}/subscribe/alliance-digest")
    assert form.status_code == 200 and 'name="email"' in form.text

    r = httpx.post(f"{base}/subscribe/alliance-digest",
                   data={"email": "newcomer@example.org", "name": "New Comer"})
    assert r.status_code == 200 and "Check your inbox" in r.text

    wait_until(lambda: len(_outbox(folder)) >= 1, timeout=30, what="the confirmation mail")
    mail = _outbox(folder)[0]
    # The requester chose the name: the confirmation does not carry it (issue 9).
    assert mail["To"] == "newcomer@example.org"
    body = mail.get_payload()[0].get_payload(decode=True).decode()
    link = re.search(r"(http://127\.0\.0\.1:\d+/confirm/\S+)", body).group(1)
    assert link.startswith(base)

    assert "Confirm your subscription" in httpx.get(link).text
    assert "Subscription confirmed" in httpx.post(link).text
    wait_until(lambda: len(_outbox(folder)) >= 2, timeout=30, what="the welcome mail")
    assert _outbox(folder)[1]["Subject"] == "Welcome to Alliance Digest"

    listed = httpx.get(f"{base}/api/v1/subscribers",
                       headers={"Authorization": f"Bearer {token}"}).json()
    [item] = listed["items"]
    assert item["email"] == "newcomer@example.org"
    assert item["subscriptions"] == [
        {**item["subscriptions"][0], "newsletter": "alliance-digest", "status": "active"}
    ]
    assert httpx.get(f"{base}/api/v1/subscribers").status_code == 401

    # The sample issue previews without a token, and sends through the embedded worker.
    preview = re.search(r"Sample issue\s+(\S+)", output).group(1)
    page = httpx.get(preview)
    assert page.status_code == 200 and "Vol 2.22" in page.text
    sample_id = re.search(r"/api/v1/issues/(\d+)/send", output).group(1)
    headers = {"Authorization": f"Bearer {token}"}
    send = httpx.post(f"{base}/api/v1/issues/{sample_id}/send", headers=headers, json={})
    assert send.status_code == 202, send.text
    wait_until(lambda: len(_outbox(folder)) >= 3, timeout=30, what="the issue")
    issue_mail = _outbox(folder)[2]
    assert "Vol 2.22" in issue_mail["Subject"]
    assert issue_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    report = wait_until(lambda: (r := httpx.get(
        f"{base}/api/v1/sends/{send.json()['id']}", headers=headers).json())["status"] == "done"
        and r, timeout=30, what="the send to finish")
    assert (report["total"], report["sent"]) == (1, 1)
    archive = httpx.get(f"{base}/archive/alliance-digest")
    assert archive.status_code == 200 and "Vol 2.22" in archive.text
    assert (folder / "var" / "missive.db").exists()
    _links_follow_the_port(base, folder, log)


def _links_follow_the_port(base: str, folder: Path, log: Path) -> None:
    """`PORT=… make run`, then `missive issue create` in another shell: every link printed
    opens on that port, and the issue's images load from it (one server for both checks)."""
    links = re.findall(r"https?://\S+", log.read_text())
    assert links and all(link.startswith(base) for link in links), links
    (folder / "issue.yaml").write_text(
        "newsletter: alliance-digest\nvolume: 3\nnumber: 1\nstories: [{headline: Pipes}]\n"
        "hero_image: {url: /static/samples/alliance-digest-2.22-hero.png, alt: A river}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISSIVE_")}
    env["PYTHONPATH"] = str(ROOT)
    created = subprocess.run([sys.executable, "-m", "app.cli", "issue", "create", "issue.yaml"],
                             cwd=folder, env=env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    preview = re.search(r"preview: (\S+)", created.stdout).group(1)
    assert preview.startswith(base)
    page = httpx.get(preview)
    (hero,) = [src for src in re.findall(r'<img[^>]* src="([^"]+)"', page.text)
               if "alliance-digest-2.22-hero" in src]
    assert hero.startswith(base) and httpx.get(hero).status_code == 200

