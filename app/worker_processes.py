"""`missive worker`: two Celery workers under one command, so mail a reader waits for is never
stuck behind a send.

- the transactional worker serves only the `transactional` queue (confirmation, welcome and
  test mails) with a few threads: each task is a handful of SMTP exchanges;
- the bulk worker serves the `missive` queue: drain tasks that run for as long as a send lasts.

One Celery worker serving both queues would not do: a drain task holds its pool slot for the
whole send, so with every slot draining a confirmation waits until the send ends. Measured with
`bench/send.py -n 20000 --confirmations 10` (2 workers, same machine, same hour): one queue, 10
of 10 sign-ups during the send waited for its end (median 88 s); two, median 0.4 s, max 2.9 s.

The command forwards SIGTERM to both (Ctrl-C reaches them directly), relays their output, and
stops (non-zero) if either dies on its own, so a supervisor (Docker, systemd) restarts the pair.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from app.config import get_settings
from app.queue import BULK_QUEUE, TRANSACTIONAL_QUEUE

TRANSACTIONAL_THREADS = 4


def commands(concurrency: int, transactional_threads: int = TRANSACTIONAL_THREADS
             ) -> list[list[str]]:
    """The two Celery worker command lines: transactional, bulk."""
    settings = get_settings()
    # In JSON mode every line must be JSON: no startup banner then.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    base = [sys.executable, "-m", "celery", "-A", "worker.celery_app", *quiet, "worker",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if settings.embedded:
        # SQLite takes one writer at a time: one task at a time in each process.
        transactional_pool = ["--pool", "solo"]
        bulk_pool = ["--pool", "solo"]
    else:
        transactional_pool = ["--pool", "threads", "--concurrency", str(transactional_threads)]
        bulk_pool = ["--concurrency", str(concurrency)]
    return [
        [*base, "-Q", TRANSACTIONAL_QUEUE, "-n", "transactional@%h", *transactional_pool],
        [*base, "-Q", BULK_QUEUE, "-n", "bulk@%h", *bulk_pool],
    ]


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM should this command be killed outright (kill -9), so no
    # worker is left behind consuming tasks on its own.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _relay(stream: IO[bytes]) -> None:
    out = sys.stdout.buffer
    for line in iter(stream.readline, b""):
        out.write(line)
        out.flush()


def run(concurrency: int, transactional_threads: int = TRANSACTIONAL_THREADS) -> int:
    """Run both workers until a signal stops them or one of them dies; the exit code."""
    procs: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()

    def forward(signum: int, _frame: Any) -> None:
        stopping.set()
        if signum == signal.SIGINT:
            return  # Ctrl-C reached the whole process group; twice would be a cold stop
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # Both at once: on two free cores that halves the time until both serve.
    for argv in commands(concurrency, transactional_threads):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)  # noqa: PLW1509
        assert proc.stdout is not None
        threading.Thread(target=_relay, args=(proc.stdout,), daemon=True).start()
        procs.append(proc)
    if stopping.is_set():
        forward(signal.SIGTERM, None)  # a child started after the signal came

    while not stopping.is_set() and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    if not stopping.is_set():
        # One died on its own: stop the other (it finishes its task) and report the failure.
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
    codes = [proc.wait() for proc in procs]
    return 0 if stopping.is_set() else (next((c for c in codes if c), 1))
