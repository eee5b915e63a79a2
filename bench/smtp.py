"""SMTP client micro-benchmark: the pipelined pool against one smtplib connection, into smtp-sink.

    .venv/bin/python bench/smtp.py                      # 20,000 messages, 2 processes x 2 sessions
    .venv/bin/python bench/smtp.py -n 50000 -p 2 -c 4   # more messages, more sessions
    .venv/bin/python bench/smtp.py --rounds 3           # 3 interleaved rounds, medians
    .venv/bin/python bench/smtp.py --smtplib 0          # skip the smtplib comparison

It starts Postfix's `smtp-sink` on a free loopback port (Debian package postfix), builds N
distinct ~30 KB messages in each sending process before the clock starts (one serialised
message, personal parts substituted into the bytes, as the send engine does), then sends them
with P processes x C sessions of `PipelinedSmtpPool.send_many` in batches, and the same
messages with one `smtplib.SMTP` connection in one process. It prints messages per second (wall
time from the first to the last message of all processes), the client CPU (user + system of the
sending processes, all threads) per message, and the CPU the sink used, then stops the sink.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.mail.pipeline import Outgoing, PipelinedSmtpPool  # noqa: E402
from app.mail.transport import SmtpConfig  # noqa: E402

SENDER = "bounces+bench@example.org"
TOKEN = b"TOKEN-0000000000000000"  # fixed length, outside quoted-printable wrapping
TO = b"to-00000000@example.net"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def template(size: int) -> bytes:
    """One newsletter issue of about `size` bytes, with placeholders for the personal parts."""
    msg = EmailMessage(policy=SMTP.clone(max_line_length=998))
    msg["From"] = "Missive Bench <news@example.org>"
    msg["To"] = TO.decode()
    msg["Subject"] = "The weekly issue: benchmarks, pipelines and sinks"
    msg["List-Unsubscribe"] = f"<https://news.example.org/u/{TOKEN.decode()}>"
    paragraph = ("Pipelining sends MAIL, RCPT and DATA in one write; the sink answers them "
                 "together. A line may start with a dot.\n.like this one\n")
    text = "".join(paragraph for _ in range(size // 2 // len(paragraph) + 1))
    html = "<html><body>" + "".join(f"<p>{line}</p>\n" for line in text.splitlines()[:-1])
    msg.set_content(text + f"Unsubscribe: https://news.example.org/u/{TOKEN.decode()}\n")
    msg.add_alternative(html + "</body></html>\n", subtype="html")
    return msg.as_bytes()


def personal(base: bytes, n: int) -> tuple[str, bytes]:
    to = f"to-{n:08d}@example.net"
    token = f"TOKEN-{n:016d}".encode()
    return to, base.replace(TO, to.encode()).replace(TOKEN, token)


@dataclass
class Result:
    sent: int
    failed: int
    cpu: float  # seconds, user + system
    start: float  # time.monotonic(), comparable across processes
    end: float


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pipelined_worker(port: int, first: int, count: int, connections: int, batch: int,
                     size: int, barrier: Barrier, out: Connection) -> None:
    base = template(size)
    items = []
    for n in range(first, first + count):
        to, data = personal(base, n)
        items.append(Outgoing(n, SENDER, to, data))
    pool = PipelinedSmtpPool(SmtpConfig("127.0.0.1", port, timeout=30), connections)
    barrier.wait()
    cpu, start = cpu_seconds(), time.monotonic()
    sent = failed = 0
    for i in range(0, count, batch):
        for outcome in pool.send_many(items[i:i + batch]):
            if outcome.sent:
                sent += 1
            else:
                failed += 1
                if failed <= 3:
                    print(f"  not sent: {outcome}", file=sys.stderr)
    end = time.monotonic()
    pool.close()
    out.send(Result(sent, failed, cpu_seconds() - cpu, start, end))


def smtplib_worker(port: int, first: int, count: int, connections: int, batch: int,
                   size: int, barrier: Barrier, out: Connection) -> None:
    base = template(size)
    items = [personal(base, n) for n in range(first, first + count)]
    barrier.wait()
    cpu, start = cpu_seconds(), time.monotonic()
    sent = failed = 0
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as conn:
        for to, data in items:
            try:
                conn.sendmail(SENDER, [to], data)
                sent += 1
            except smtplib.SMTPException as exc:
                failed += 1
                if failed <= 3:
                    print(f"  not sent: {exc}", file=sys.stderr)
    end = time.monotonic()
    out.send(Result(sent, failed, cpu_seconds() - cpu, start, end))


@dataclass
class Run:
    rate: float
    cpu_us: float
    sink_cpu: float  # share of one core
    failed: int


def sink_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def run(kind: str, port: int, sink_pid: int, total: int, processes: int, connections: int,
        batch: int, size: int) -> Run:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(processes)
    target = pipelined_worker if kind == "pipelined" else smtplib_worker
    share, rest = divmod(total, processes)
    procs, pipes, first = [], [], 0
    for i in range(processes):
        count = share + (1 if i < rest else 0)
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=target, args=(port, first, count, connections, batch, size,
                                                 barrier, sender))
        proc.start()
        procs.append(proc)
        pipes.append(receiver)
        first += count
    ticks = sink_ticks(sink_pid)
    results: list[Result] = [pipe.recv() for pipe in pipes]
    sink_used = (sink_ticks(sink_pid) - ticks) / os.sysconf("SC_CLK_TCK")
    for proc in procs:
        proc.join()
    wall = max(r.end for r in results) - min(r.start for r in results)
    sent = sum(r.sent for r in results)
    return Run(rate=sent / wall, cpu_us=sum(r.cpu for r in results) / total * 1e6,
               sink_cpu=sink_used / wall, failed=sum(r.failed for r in results))


def wait_for_port(port: int, sink: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sink.poll() is not None:
            raise SystemExit(f"smtp-sink exited with status {sink.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(100)
                s.sendall(b"QUIT\r\n")
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("smtp-sink did not start listening")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=20_000)
    parser.add_argument("-p", "--processes", type=int, default=2)
    parser.add_argument("-c", "--connections", type=int, default=2,
                        help="SMTP sessions per process")
    parser.add_argument("--batch", type=int, default=500, help="messages per send_many call")
    parser.add_argument("--size", type=int, default=30_000, help="approximate message bytes")
    parser.add_argument("--smtplib", type=int, default=None, metavar="N",
                        help="messages for the one-connection smtplib comparison "
                             "(default: as many as -n; 0 skips it)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians")
    parser.add_argument("--lockstep", action="store_true",
                        help="make the sink refuse PIPELINING (smtp-sink -p)")
    args = parser.parse_args()
    baseline = args.messages if args.smtplib is None else args.smtplib

    sink_bin = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink_bin).exists():
        print("smtp-sink is missing. It comes with Debian's postfix package:\n"
              "    apt-get update && apt-get install -y postfix", file=sys.stderr)
        return 2
    port = free_port()
    command = [sink_bin, "-4"]
    if os.geteuid() == 0:
        command += ["-u", "postfix"]
    if args.lockstep:
        command.append("-p")
    command += [f"127.0.0.1:{port}", "1000"]
    sink = subprocess.Popen(command)
    try:
        wait_for_port(port, sink)
        size = len(template(args.size))
        print(f"smtp-sink on 127.0.0.1:{port}; {args.messages} messages of {size} bytes; "
              f"{os.cpu_count()} CPUs; rounds: {args.rounds}")
        shape = f"pipelined, {args.processes} proc x {args.connections} conn"
        runs: dict[str, list[Run]] = {shape: [], "smtplib, 1 connection": []}
        for _ in range(args.rounds):
            runs[shape].append(run("pipelined", port, sink.pid, args.messages,
                                   args.processes, args.connections, args.batch, args.size))
            if baseline:
                runs["smtplib, 1 connection"].append(
                    run("smtplib", port, sink.pid, baseline, 1, 1, args.batch, args.size))
        print(f"{'client':<34} {'msg/s':>8} {'client CPU µs/msg':>18} {'sink CPU':>9} "
              f"{'failed':>7}")
        for name, done in runs.items():
            if not done:
                continue
            each = " ".join(f"{r.rate:,.0f}" for r in done)
            print(f"{name:<34} {statistics.median(r.rate for r in done):>8,.0f} "
                  f"{statistics.median(r.cpu_us for r in done):>18,.0f} "
                  f"{statistics.median(r.sink_cpu for r in done):>9.0%} "
                  f"{sum(r.failed for r in done):>7}" + (f"   rounds: {each}"
                                                         if len(done) > 1 else ""))
        return 1 if any(r.failed for done in runs.values() for r in done) else 0
    finally:
        sink.terminate()
        try:
            sink.wait(5)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()


if __name__ == "__main__":
    raise SystemExit(main())
