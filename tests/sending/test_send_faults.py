"""A reader is mailed at most once unless their row is reported `unknown`, whatever happens to a
live worker: paused past its lease, stuck on a slow SMTP reply, starved by the rate cap, or
stopped for a redeploy (which must leave nothing `unknown` and nobody missed)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

from sqlalchemy import select

from tests.conftest import wait_until
from tests.sending.conftest import Sink, Workers, add_readers, send_report, wait_done


def _start(client: Any, auth: dict[str, str], issue: int) -> int:
    r = client.post(f"/api/v1/issues/{issue}/send", headers=auth, json={})
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def _row_status(send_id: int) -> dict[str, str]:
    from app.db import session_scope
    from app.sending.models import Delivery
    from app.subscribers.models import Subscriber

    with session_scope() as session:
        return dict(session.execute(
            select(Subscriber.email, Delivery.status)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.send_id == send_id)).tuples().all())


def _once_unless_unknown(sink: Sink, addresses: list[str], send_id: int) -> Counter[str]:
    """Every reader got exactly one copy, except those whose row says `unknown`."""
    counts = Counter(sink.recipients())
    status = _row_status(send_id)
    twice = sorted(a for a, n in counts.items() if n > 1)
    assert all(status[a] == "unknown" for a in twice), (
        f"{len(twice)} readers got two copies without being reported unknown: {twice[:5]}")
    missing = sorted(set(addresses) - set(counts))
    assert all(status[a] == "unknown" for a in missing), f"never mailed: {missing[:5]}"
    assert set(counts) <= set(addresses)
    return counts


def test_a_worker_paused_past_its_lease_then_resumed_mid_send(client, auth, issue, sink,
                                                              workers, beat):
    addresses = add_readers(300)
    # One reader's server answers "try later" until the end: the send stays running on that
    # reader's retries while everyone else is done, so the paused worker wakes mid-send.
    sink.inbox.reject[addresses[0]] = "451 4.3.0 try again later"
    workers.start(2, MISSIVE_SEND_RATE="60", MISSIVE_SEND_MAX_ATTEMPTS="12")
    send_id = _start(client, auth, issue)
    wait_until(lambda: send_report(client, auth, send_id)["sent"] >= 40, timeout=60,
               what="the send to get under way")
    workers.signal(0, signal.SIGSTOP)
    # Past its 4 s lease its rows are handed back (beat) and the other worker mails them.
    wait_until(lambda: (lambda r: r["sent"] + r["unknown"] >= 299)(
        send_report(client, auth, send_id)), timeout=150, what="the others to be mailed")
    during = send_report(client, auth, send_id)
    assert during["status"] == "running", during
    workers.signal(0, signal.SIGCONT)
    time.sleep(3)  # the resumed worker carries on with the batch it held
    sink.inbox.reject.clear()
    report = wait_done(client, auth, send_id, timeout=150, workers=workers)
    assert report["status"] == "done", report
    assert (report["sent"] + report["unknown"], report["failed"]) == (300, 0), report
    _once_unless_unknown(sink, addresses, send_id)
    # Only the window in flight at the pause can be in doubt.
    assert report["unknown"] <= 16


def test_an_smtp_reply_slower_than_the_lease(client, auth, issue, sink, workers, beat):
    addresses = add_readers(300)
    sink.delay[addresses[3]] = 14.0  # the lease is 6 s: more than twice over
    workers.start(2, MISSIVE_SEND_LEASE_SECONDS="6")
    send_id = _start(client, auth, issue)
    report = wait_done(client, auth, send_id, timeout=120, workers=workers)
    assert report["status"] == "done", report
    counts = _once_unless_unknown(sink, addresses, send_id)
    # The lease was renewed while the reply was awaited: nothing in doubt, nobody missed.
    assert (report["sent"], report["unknown"]) == (300, 0), report
    assert counts[addresses[3]] == 1


def test_many_workers_starved_by_a_low_rate_cap(client, auth, issue, sink, workers, beat):
    addresses = add_readers(400)
    # Four workers each holding 64 rows, 20 messages a second between them: a claimed batch
    # waits in the cap for far longer than its 6 s lease.
    workers.start(4, MISSIVE_SEND_RATE="20", MISSIVE_SEND_LEASE_SECONDS="6")
    send_id = _start(client, auth, issue)
    report = wait_done(client, auth, send_id, timeout=180, workers=workers)
    assert report["status"] == "done", report
    counts = _once_unless_unknown(sink, addresses, send_id)
    assert (report["sent"], report["unknown"]) == (400, 0), report
    assert max(counts.values()) == 1


def test_sigterm_to_every_worker_mid_send_then_start_again(client, auth, issue, sink,
                                                           workers: Workers, beat):
    addresses = add_readers(1000)
    workers.start(3, MISSIVE_SEND_RATE="150")
    send_id = _start(client, auth, issue)
    wait_until(lambda: send_report(client, auth, send_id)["sent"] >= 300, timeout=60,
               what="the send to get under way")
    workers.stop()  # SIGTERM, as a redeploy does
    midway = send_report(client, auth, send_id)
    assert midway["status"] == "running" and midway["sent"] < 1000, midway
    # Each worker recorded its last window and handed back the rest of its claim.
    assert (midway["in_flight"], midway["unknown"]) == (0, 0), midway
    workers.start(3)
    report = wait_done(client, auth, send_id, timeout=120, workers=workers)
    assert report["status"] == "done", report
    assert (report["sent"], report["unknown"], report["failed"]) == (1000, 0, 0), report
    counts = Counter(sink.recipients())
    assert set(counts) == set(addresses) and max(counts.values()) == 1
    logs = workers.log_text()
    assert "drained: claimed" in logs and "(worker stopping)" in logs
