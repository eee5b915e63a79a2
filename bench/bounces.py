"""How long the bounce parser takes on large and hostile messages (best of three).

    .venv/bin/python bench/bounces.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.bounces.parse import (  # noqa: E402
    MAX_MESSAGE_BYTES,
    NotABounce,
    Unreadable,
    parse_message,
)
from tests.bounces.test_bounce_parsing import HOSTILE, big_report  # noqa: E402


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


def main() -> None:
    cases = {"a 10 MB DSN (PDF attached)": big_report(),
             **{name: raw[:MAX_MESSAGE_BYTES] for name, raw in HOSTILE.items()}}
    for name, raw in cases.items():
        seconds, outcome = best_of_three(raw)
        print(f"{name:45s} {len(raw) / 1e6:5.1f} MB  {seconds * 1000:7.1f} ms  {outcome}")


if __name__ == "__main__":
    main()
