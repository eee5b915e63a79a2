"""How fast the bounce parser reads reports, and how long it takes on large and hostile ones.

    .venv/bin/python bench/bounces.py [--rounds N]

First every fixture in tests/bounces/fixtures/ (one per family of mail servers), parsed over and
over: messages per second, and the events by reason and kind. Then the 10 MB and hostile
messages of the parser's tests, best of three each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.bounces.parse import (  # noqa: E402
    MAX_MESSAGE_BYTES,
    NotABounce,
    Unreadable,
    parse_message,
)
from app.bounces.reasons import decide  # noqa: E402
from tests.bounces.test_bounce_parsing import HOSTILE, big_report  # noqa: E402
from tests.bounces.test_bounce_reasons import (  # noqa: E402
    SENDER_REFUSAL_WORDINGS,
    WORDING_ROWS,
)

FIXTURES = ROOT / "tests" / "bounces" / "fixtures"


def best_of_three(raw: bytes) -> tuple[float, str]:
    best, outcome = float("inf"), ""
    for _ in range(3):
        start = time.perf_counter()
        try:
            outcome = f"{len(parse_message(raw))} event(s)"
        except NotABounce:
            outcome = "not a bounce"
        except Unreadable:
            outcome = "unreadable"
        best = min(best, time.perf_counter() - start)
    return best, outcome


def fixtures(rounds: int) -> None:
    messages = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))]
    reasons: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    refused = 0
    for raw in messages:
        try:
            events = parse_message(raw)
        except NotABounce:
            refused += 1
            continue
        reasons.update(e.reason for e in events)
        kinds.update(e.kind for e in events)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for raw in messages:
            with contextlib.suppress(NotABounce):
                parse_message(raw)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    parsed = rounds * len(messages)
    print(f"fixtures: {len(messages)} messages ({refused} not bounces), {rounds} rounds")
    print(f"  {parsed / seconds:,.0f} messages/s ({seconds / parsed * 1e6:,.0f} µs each); "
          f"{parsed / cpu:,.0f} messages per CPU second")
    print("  events by reason: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())))
    print("  events by kind:   " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))


def rules(rounds: int) -> None:
    texts = [words for _, words, _ in WORDING_ROWS] + SENDER_REFUSAL_WORDINGS
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for text in texts:
            decide(status=None, diagnostic=text)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    decided = rounds * len(texts)
    print(f"reason rules: {decided / seconds:,.0f} decisions/s "
          f"({seconds / decided * 1e6:.1f} µs each, {len(texts)} wordings); "
          f"{decided / cpu:,.0f} per CPU second")


def hostile() -> None:
    cases = {"a 10 MB DSN (PDF attached)": big_report(),
             **{name: raw[:MAX_MESSAGE_BYTES] for name, raw in HOSTILE.items()}}
    print("large and hostile messages (best of three):")
    for name, raw in cases.items():
        seconds, outcome = best_of_three(raw)
        print(f"  {name:45s} {len(raw) / 1e6:5.1f} MB  {seconds * 1000:7.1f} ms  {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="passes over the fixtures")
    args = parser.parse_args()
    # Figures scale with what else the machine is doing; say so beside them.
    print("load average: " + " ".join(f"{x:.1f}" for x in os.getloadavg())
          + f" on {os.cpu_count()} CPUs")
    fixtures(args.rounds)
    rules(args.rounds * 20)
    hostile()


if __name__ == "__main__":
    main()
