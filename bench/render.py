"""Rendering benchmark: the cost of an issue once, and of each reader's copy.

    .venv/bin/python bench/render.py                   # ~30 KB issue, 20,000 readers
    .venv/bin/python bench/render.py -n 100000 --runs 5

Builds a ~30 KB issue from the sample (samples/alliance-digest-2.22.yaml plus more stories),
then times, as medians: the per-issue work (Jinja2 templates, Markdown, premailer inlining and
serialising the pre-built MIME message) and the per-reader work (`personalise`: a handful of
values encoded and joined into the pre-built bytes). Readers alternate between ASCII and
non-ASCII names. Signing each reader's unsubscribe token is timed separately: it is per-reader
work of the sending pipeline, not of rendering. Needs no database or network.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.issues.render import NewsletterInfo
    from app.issues.schemas import IssueContent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BASE = "https://news.example.org"
TARGET_HTML_BYTES = 30 * 1024


def build_issue() -> tuple[IssueContent, NewsletterInfo]:
    import yaml

    from app.issues.render import NewsletterInfo, render_issue
    from app.issues.schemas import IssueContent, IssueDocument

    data = yaml.safe_load((ROOT / "samples" / "alliance-digest-2.22.yaml").read_text())
    originals = list(data["stories"])
    info = NewsletterInfo(
        slug="alliance-digest", name="Alliance Digest", from_name="Alliance Digest",
        from_email="digest@riverside-water.example.org",
        reply_to="editors@riverside-water.example.org",
        footer="You receive the Alliance Digest because you signed up at "
               "riverside-water.example.org.",
        postal_address="Riverside Water Alliance, 12 Weir Lane, Millbrook 40112",
    )

    def content(stories: list[dict[str, Any]]) -> IssueContent:
        document = IssueDocument.model_validate({**data, "stories": stories},
                                                context={"base_url": BASE})
        return IssueContent.model_validate(document.model_dump(exclude={"newsletter"}))

    stories = list(originals)
    while True:
        issue = content(stories)
        size = len(render_issue(issue, info, base_url=BASE, web=True).html.encode())
        if size >= TARGET_HTML_BYTES or len(stories) >= 40:
            return issue, info
        extra = dict(originals[len(stories) % len(originals)])
        extra["headline"] = f"{extra['headline']} (part {len(stories) // len(originals) + 1})"
        stories.append(extra)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-n", "--recipients", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of the per-reader loop")
    parser.add_argument("--renders", type=int, default=7, help="per-issue renders timed")
    args = parser.parse_args()

    # Token signing reads the settings; give it a key and keep var/ out of the checkout.
    os.environ.setdefault("MISSIVE_SECRET_KEY", "bench-secret-key-0123456789abcdef")
    os.environ.setdefault("MISSIVE_VAR_DIR", tempfile.mkdtemp(prefix="missive-bench-"))

    from app.issues import render
    from app.security import sign

    content, info = build_issue()
    date = datetime.now(UTC)

    def render_once() -> render.PrebuiltMessage:
        return render.build_message(render.render_issue(content, info, base_url=BASE, date=date))

    prebuilt = render_once()  # warm: templates compiled, CSS parser cache filled
    rendered = render.render_issue(content, info, base_url=BASE, date=date)
    html_bytes = len(rendered.fill(render.Recipient(
        email="a@example.org", unsubscribe_url=f"{BASE}/u/{'x' * 96}"))[0].encode())
    per_issue = median_ms(render_once, args.renders)
    build = median_ms(lambda: render.build_message(rendered), args.renders)

    names = ["Ada Lovelace", "Zoë Ñúñez-Åström", "Grace Hopper", "李小龍", ""]
    readers = [
        render.Recipient(
            email=f"reader{i}@example.org", name=names[i % len(names)],
            unsubscribe_url=f"{BASE}/u/{sign('unsubscribe', {'s': i, 'a': f'{i:016x}'})}",
            unsubscribe_mailto=f"mailto:bounces@news.example.org?subject=unsubscribe%20{i}",
            message_id=f"{i}.7.abcdef@riverside-water.example.org",
        )
        for i in range(args.recipients)
    ]
    personalise = render.personalise
    loops = []
    size = 0
    for _ in range(args.runs):
        start = time.perf_counter()
        for reader in readers:
            size = len(personalise(prebuilt, reader))
        loops.append((time.perf_counter() - start) / len(readers))
    per_reader_us = statistics.median(loops) * 1e6

    sign_start = time.perf_counter()
    for i in range(min(args.recipients, 20_000)):
        sign("unsubscribe", {"s": i, "a": f"{i:016x}"})
    sign_us = (time.perf_counter() - sign_start) / min(args.recipients, 20_000) * 1e6

    print(f"issue: {len(content.stories)} stories, HTML {html_bytes / 1024:.1f} KB, "
          f"message {size / 1024:.1f} KB")
    print(f"per issue  (templates, Markdown, premailer, MIME build): {per_issue:.1f} ms "
          f"(median of {args.renders}; of which the MIME build {build:.1f} ms)")
    print(f"per reader (personalise): {per_reader_us:.1f} µs "
          f"(median of {args.runs} runs over {args.recipients:,} readers)")
    print(f"for reference, signing one unsubscribe token: {sign_us:.1f} µs")


if __name__ == "__main__":
    main()
