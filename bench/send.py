"""End-to-end send benchmark: N readers, M worker processes, PostgreSQL + Redis, smtp-sink.

    .venv/bin/python bench/send.py                     # 100,000 readers, 2 workers
    .venv/bin/python bench/send.py -n 1000000 -m 2     # a million
    .venv/bin/python bench/send.py -n 10000 --pool 2   # SMTP connections per worker
    .venv/bin/python bench/send.py --confirmations 20  # + sign-up confirmation latency
    .venv/bin/python bench/send.py --dkim --rounds 2   # DKIM off, then on: both rates, ratio

It creates its own database (missive_bench_<random>, dropped at the end), loads the readers
with COPY, starts Postfix's smtp-sink on a free loopback port and the workers, triggers the send
and waits until the last ledger row is recorded. It prints messages per second from trigger to
last row, the audience snapshot time, each worker's peak memory (VmHWM), and where the
machine's CPU time went per message sent (the workers, smtp-sink, this database's PostgreSQL
backends, and anything else running on the machine meanwhile: on a shared machine that last
figure says how far to trust the rate). Needs smtp-sink (Debian package postfix) and the
PostgreSQL and Redis of the test suite.

With --dkim it runs whole sends with DKIM off and on (an RSA-2048 key), alternated --rounds
times, each on its own database and workers, and prints both rates, their ratio (medians, and
pair by pair) and the workers' CPU per message off and on.

With --confirmations K, a reader signs up about once a second while the send runs (K in all):
it prints how long each confirmation took from the sign-up to the SMTP server's acceptance
(the worker records "confirmation-mailed" right after the 250).
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_kib(pid: int) -> int:
    """Peak resident memory of a process (VmHWM), in KiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process, in seconds; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, over all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    total = sum(values) / os.sysconf("SC_CLK_TCK")
    idle = (values[3] + values[4]) / os.sysconf("SC_CLK_TCK")  # idle and iowait
    return total - idle, total


def backends(dbname: str) -> list[int]:
    """PostgreSQL's server processes serving the bench database (by their process title)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"postgres: ") and f" {dbname} ".encode() in title:
                out.append(int(entry.name))
    return out


class CpuMeter:
    """CPU seconds spent by groups of processes from a start, sampled as the run goes (a
    process that ends between two samples loses its last half second, no more)."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group: dict[int, str] = {}
        self.busy0 = machine_busy()

    def sample(self, groups: dict[str, list[int]]) -> None:
        for name, pids in groups.items():
            for pid in pids:
                used = cpu_seconds(pid)
                if used is None:
                    continue
                self.first.setdefault(pid, used)
                self.last[pid] = used
                self.group[pid] = name

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, used in self.last.items():
            name = self.group[pid]
            out[name] = out.get(name, 0.0) + used - self.first[pid]
        busy, total = machine_busy()
        out["machine busy"] = busy - self.busy0[0]
        out["machine all"] = total - self.busy0[1]
        return out


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            out.append(child)
            todo.append(child)
    return out


def report_running(send_id: int) -> bool:
    from app.db import session_scope
    from app.sending import service as sending

    with session_scope() as session:
        report = sending.report(session, sending.get(session, send_id))
    return bool(report["status"] == "running" and report["sent"] > 0)


def sign_up_probe(number: int) -> dict[str, datetime]:
    """A reader signs up through the service, as the form does; their address and when."""
    from app import demo
    from app.db import session_scope, utcnow
    from app.signup import service as signup
    from app.subscribers.service import Actor

    address = f"probe{number:04d}@example.org"
    at = utcnow()
    with session_scope() as session:
        signup.sign_up(session, slug=demo.SLUG, email=address, name=None,
                       actor=Actor(source="bench"))
    return {address: at}


def confirmation_latencies(probes: dict[str, datetime], wait: float = 30) -> list[float]:
    """Seconds from each sign-up to its confirmation's acceptance by the SMTP server."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.subscribers.models import ConsentEvent, Subscriber

    deadline = time.monotonic() + wait
    while True:
        with session_scope() as session:
            mailed = {email: at for email, at in session.execute(
                select(Subscriber.email, ConsentEvent.created_at)
                .join(ConsentEvent, ConsentEvent.subscriber_id == Subscriber.id)
                .where(ConsentEvent.action == "confirmation-mailed",
                       Subscriber.email.in_(list(probes))))}
        if len(mailed) == len(probes) or time.monotonic() > deadline:
            return [(mailed[a] - at).total_seconds() for a, at in probes.items() if a in mailed]
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--readers", type=int, default=100_000)
    parser.add_argument("-m", "--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--pool", type=int, default=2, help="SMTP connections per worker")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--confirmations", type=int, default=0,
                        help="sign-ups during the send whose confirmation latency to measure")
    parser.add_argument("--dkim", action="store_true",
                        help="run with DKIM off, then on (RSA-2048), and compare the rates")
    parser.add_argument("--rounds", type=int, default=1, help="off/on pairs with --dkim")
    parser.add_argument("--dkim-key", help=argparse.SUPPRESS)  # one signed run (from --dkim)
    args = parser.parse_args()
    if args.dkim:
        return compare_dkim(args.rounds)
    # Stopped from outside: still stop the workers and drop the database (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    sink_bin = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink_bin).exists():
        print("smtp-sink is missing: install Debian's postfix (apt-get install -y postfix)",
              file=sys.stderr)
        return 2

    import psycopg

    run = secrets.token_hex(4)
    dbname = f"missive_bench_{run}"
    user, _, hostport = args.pg.partition("@")
    host, _, port = hostport.partition(":")
    admin = psycopg.connect(host=host, port=int(port), user=user, dbname="postgres",
                            autocommit=True)
    admin.execute(f'CREATE DATABASE "{dbname}"')
    sink_port = free_port()
    var = Path(tempfile.mkdtemp(prefix="missive-bench-"))
    env = {
        **os.environ,
        "MISSIVE_DATABASE_URL": f"postgresql+psycopg://{user}@{host}:{port}/{dbname}",
        "MISSIVE_SECRET_KEY": secrets.token_urlsafe(32),
        "MISSIVE_REDIS_URL": args.redis,
        "MISSIVE_BROKER_URL": args.redis,
        "MISSIVE_REDIS_PREFIX": f"missive-bench-{run}:",
        "MISSIVE_MAIL_URL": f"smtp://127.0.0.1:{sink_port}?pool={args.pool}",
        "MISSIVE_BASE_URL": "https://news.example.org",
        "MISSIVE_BOUNCE_ADDRESS": "bounces@news.example.org",
        "MISSIVE_VAR_DIR": str(var),
        "MISSIVE_SEND_BATCH": str(args.batch),
        "MISSIVE_SEND_WINDOW": str(args.window),
        "MISSIVE_SEND_DRAIN_TASKS": str(args.workers * 2),
    }
    if args.dkim_key:
        env.update(MISSIVE_DKIM_SELECTOR="bench", MISSIVE_DKIM_PRIVATE_KEY_PATH=args.dkim_key,
                   MISSIVE_DKIM_DOMAIN="riverside-water.example.org")
    os.environ.update(env)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        from sqlalchemy import select

        from app import demo
        from app.cli import _upgrade
        from app.db import session_scope
        from app.issues.models import Issue
        from app.newsletters.models import Newsletter
        from app.sending import service as sending

        _upgrade()
        with session_scope() as session:
            demo.load(session)
            newsletter_id = session.scalar(select(Newsletter.id))
            issue_id = session.scalar(select(Issue.id).order_by(Issue.id))
        t0 = time.perf_counter()
        with psycopg.connect(host=host, port=int(port), user=user, dbname=dbname) as conn:
            with conn.cursor().copy(
                "COPY subscribers (email, email_key, name, attributes, created_at, updated_at)"
                " FROM STDIN"
            ) as copy:
                for i in range(args.readers):
                    address = f"reader{i:07d}@example.org"
                    copy.write_row((address, address, f"Reader {i}", "{}", "now", "now"))
            conn.execute(
                "INSERT INTO subscriptions (subscriber_id, newsletter_id, status, source, "
                "created_at, confirmed_at) SELECT id, %s, 'active', 'bench', now(), now() "
                "FROM subscribers", (newsletter_id,))
            conn.execute("ANALYZE")
        print(f"loaded {args.readers:,} readers in {time.perf_counter() - t0:.1f}s")

        procs.append(subprocess.Popen(
            [sink_bin, "-4", "-u", "postfix", f"127.0.0.1:{sink_port}", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        workers = []
        for i in range(args.workers):
            log = (var / f"worker-{i}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--concurrency", "1"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            workers.append(proc)
        deadline = time.monotonic() + 60
        # Each `missive worker` runs two Celery workers (bulk, transactional).
        while sum((var / f"worker-{i}.log").read_bytes().count(b" ready.") >= 2
                  for i in range(args.workers)) < args.workers:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not start; see " + str(var))
            time.sleep(0.2)

        sink = procs[0]

        def groups() -> dict[str, list[int]]:
            return {"workers": [pid for proc in workers
                                for pid in [proc.pid, *descendants(proc.pid)]],
                    "smtp-sink": [sink.pid, *descendants(sink.pid)],
                    "postgres": backends(dbname)}

        meter = CpuMeter()
        meter.sample(groups())
        started = time.perf_counter()
        with session_scope() as session:
            send = sending.schedule(session, issue_id, at=None, next_cadence_slot=False,
                                    actor="bench")
            send_id = send.id
        triggered = time.perf_counter() - started
        peaks: dict[int, int] = {}
        probes: dict[str, datetime] = {}
        last_probe = 0.0
        while True:
            if (len(probes) < args.confirmations and time.monotonic() - last_probe >= 1
                    and report_running(send_id)):
                last_probe = time.monotonic()
                probes.update(sign_up_probe(len(probes)))
            for proc in workers:
                for pid in [proc.pid, *descendants(proc.pid)]:
                    peaks[pid] = max(peaks.get(pid, 0), peak_kib(pid))
            meter.sample(groups())
            with session_scope() as session:
                report = sending.report(session, sending.get(session, send_id))
            if report["status"] not in ("scheduled", "running"):
                break
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        meter.sample(groups())
        cpu = meter.totals()
        latencies = confirmation_latencies(probes)
        done = report["sent"] + report["failed"] + report["skipped"]
        out = io.StringIO()
        out.write(f"readers              {args.readers:,}\n")
        out.write(f"workers × SMTP conns {args.workers} × {args.pool}\n")
        out.write(f"status               {report['status']}  sent {report['sent']:,}  "
                  f"failed {report['failed']:,}  unknown {report['unknown']:,}\n")
        out.write(f"audience snapshot    {report['snapshot_seconds']:.2f}s "
                  f"(taken by a worker; the trigger call took {triggered:.2f}s)\n")
        out.write(f"end to end           {elapsed:.1f}s  →  {done / elapsed:,.0f} messages/s\n")
        # Where the machine's time went, per message sent: what a signature adds shows here.
        per = 1e6 / max(done, 1)
        known = cpu["workers"] + cpu["smtp-sink"] + cpu["postgres"]
        out.write(f"CPU per message      workers {cpu['workers'] * per:,.0f} µs, smtp-sink "
                  f"{cpu['smtp-sink'] * per:,.0f} µs, postgres {cpu['postgres'] * per:,.0f} µs, "
                  f"anything else {(cpu['machine busy'] - known) * per:,.0f} µs; machine "
                  f"{cpu['machine busy'] / max(cpu['machine all'], 1e-9):.0%} busy\n")
        worker_peaks = sorted(peaks.values(), reverse=True)
        out.write("worker peak memory   " + ", ".join(f"{k / 1024:.0f} MiB"
                                                       for k in worker_peaks if k) + "\n")
        if args.confirmations:
            if latencies:
                latencies.sort()
                out.write(f"confirmations        {len(latencies)} of {len(probes)} signed up "
                          f"during the send; latency median "
                          f"{statistics.median(latencies):.2f}s, max {latencies[-1]:.2f}s\n")
            else:
                out.write(f"confirmations        none of {len(probes)} arrived\n")
        print(out.getvalue(), end="")
        return 0 if report["status"] == "done" else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        from app.db import get_engine

        get_engine().dispose()
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(var, ignore_errors=True)
        import redis

        client = redis.Redis.from_url(args.redis)
        for key in client.scan_iter(match=f"missive-bench-{run}:*", count=1000):
            client.delete(key)


def compare_dkim(rounds: int) -> int:
    """Whole runs with DKIM off and on, alternated; each its own database and workers."""
    import re
    import statistics

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder = Path(tempfile.mkdtemp(prefix="missive-bench-dkim-"))
    key_file = folder / "dkim.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    argv = [a for a in sys.argv[1:] if a != "--dkim"]
    if "--rounds" in argv:
        at = argv.index("--rounds")
        del argv[at:at + 2]
    rates: dict[str, list[float]] = {"off": [], "on": []}
    # CPU µs per message of the bench's own processes: workers, and all of them.
    worker_cpu: dict[str, list[float]] = {"off": [], "on": []}
    own_cpu: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for _ in range(rounds):
            for mode, extra in (("off", []), ("on", ["--dkim-key", str(key_file)])):
                print(f"--- DKIM {mode}", flush=True)
                done = subprocess.run([sys.executable, __file__, *argv, *extra],
                                      capture_output=True, text=True)
                print(done.stdout, end="", flush=True)
                found = re.search(r"→\s+([\d,]+) messages/s", done.stdout)
                if done.returncode != 0 or not found:
                    print(done.stderr[-2000:], file=sys.stderr)
                    return 1
                rates[mode].append(float(found[1].replace(",", "")))
                cpu = re.search(r"CPU per message\s+workers ([\d,]+) µs, smtp-sink ([\d,]+) µs, "
                                r"postgres ([\d,]+) µs", done.stdout)
                if cpu:
                    used = [float(x.replace(",", "")) for x in cpu.groups()]
                    worker_cpu[mode].append(used[0])
                    own_cpu[mode].append(sum(used))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    pairs = [b / a for a, b in zip(rates["off"], rates["on"], strict=True)]
    print(f"DKIM off {off:,.0f} messages/s, on {on:,.0f} messages/s: signed at {on / off:.0%} "
          f"of the unsigned rate (medians of {rounds} alternated pair(s); pair by pair "
          + ", ".join(f"{p:.0%}" for p in pairs) + ")")
    if worker_cpu["off"] and worker_cpu["on"]:
        w_off, w_on = statistics.median(worker_cpu["off"]), statistics.median(worker_cpu["on"])
        o_off, o_on = statistics.median(own_cpu["off"]), statistics.median(own_cpu["on"])
        print(f"worker CPU per message: {w_off:,.0f} µs off, {w_on:,.0f} µs on "
              f"(+{w_on - w_off:,.0f} µs for signing)")
        # The machine's cores are all busy in both runs, so with nothing else running the
        # rates would go as the inverse of the bench's own CPU per message.
        print(f"the bench's own CPU per message (workers, smtp-sink, postgres): {o_off:,.0f} µs "
              f"off, {o_on:,.0f} µs on: on a machine of its own, signed at about "
              f"{o_off / o_on:.0%} of the unsigned rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
