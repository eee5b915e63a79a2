"""A worker's log lines, in JSON: every line an object, with the send or task it is about."""

from __future__ import annotations

import json

from tests.conftest import wait_until
from tests.sending.conftest import add_readers, wait_done


def test_worker_json_lines_name_the_send_and_the_task(client, auth, issue, sink, workers):
    add_readers(30)
    workers.start(1, MISSIVE_LOG_FORMAT="json")
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    assert r.status_code == 202, r.text
    send_id = r.json()["id"]
    assert wait_done(client, auth, send_id, workers=workers)["status"] == "done"
    r = client.post("/subscribe/alliance-digest", json={"email": "logged@example.org"},
                    headers={"X-Request-ID": "signup-trace-1"})
    assert r.status_code == 202
    wait_until(lambda: sink.inbox.to("logged@example.org"), timeout=30, what="the confirmation")
    log = workers.logs[0]

    def records() -> list[dict]:
        return [json.loads(x) for x in log.read_text().splitlines() if x.strip()]

    wait_until(lambda: any(r["logger"] == "missive.mail" for r in records()), what="mail line")
    lines = records()  # json.loads on every line: nothing else was written
    assert all(r["process"] == "worker" and r["time"] and r["level"] for r in lines)
    assert sum("ready." in r["message"] for r in lines) == 2  # bulk and transactional
    drains = [r for r in lines if r["logger"] == "app.sending.engine" and r["level"] == "INFO"
              and "drained" in r["message"]]
    assert drains and all(r["send_id"] == send_id and r["task"] == "missive.drain_send"
                          for r in drains)
    assert any("sent 30" in r["message"] for r in drains), drains
    mail = [r for r in lines if r["logger"] == "missive.mail"]
    assert mail[0]["level"] == "INFO" and "1 sent" in mail[0]["message"]
    assert mail[0]["task"] == "missive.send_confirmations" and "send_id" not in mail[0]
    # The sign-up's request id follows its confirmation into the worker.
    assert mail[0]["request_id"] == "signup-trace-1"
