"""Editions benchmark: the PDF edition of the sample issue, and a draft from a 200-item feed.

    .venv/bin/python bench/editions.py               # 5 PDF renders, 5 drafts
    .venv/bin/python bench/editions.py --runs 10

PDF: renders samples/alliance-digest-2.22.yaml with the print template through WeasyPrint (hero
image read from static/, tagged PDF/UA-1), not kept: the first render of the process (fonts
loaded) and the median of the rest. Target: under 2 s.

Draft: a local HTTP server serves an RSS feed of 200 items (HTML summaries of ~1 KB, an image
each); each run drafts from it on a fresh SQLite database in a temporary folder (the embedded
default) through the guarded fetcher: fetch, parse, convert to Markdown, create the issue and
record the items. Medians, with parsing alone timed apart. Needs no server besides itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BASE = "http://127.0.0.1:8000"


def feed_document(items: int) -> bytes:
    now = datetime.now(UTC)
    parts = []
    for i in range(items):
        html = (f"<p>Item {i}: the <b>council</b> met on the pipes, and "
                f"<a href='https://example.org/{i}/more'>here is more</a>.</p>"
                + "<p>" + "A sentence about water mains and who pays for them. " * 14 + "</p>"
                "<ul><li>one point</li><li>another point</li></ul>")
        parts.append(
            f"<item><title>Story number {i} about the river</title>"
            f"<link>https://example.org/{i}</link><guid>item-{i}</guid>"
            f"<pubDate>{format_datetime(now - timedelta(hours=i))}</pubDate>"
            f"<description>{escape(html)}</description>"
            f'<media:content url="https://example.org/{i}.jpg" medium="image">'
            f"<media:credit>Photo {i}</media:credit></media:content></item>")
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
            'xmlns:media="http://search.yahoo.com/mrss/"><channel><title>Bench</title>'
            f"<link>https://example.org/</link>{''.join(parts)}</channel></rss>").encode()


def serve(body: bytes) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"127.0.0.1:{httpd.server_address[1]}"


def bench_pdf(runs: int) -> None:
    import yaml

    from app.editions.pdf import render_pdf
    from app.issues.render import NewsletterInfo
    from app.issues.schemas import IssueContent, IssueDocument

    data = yaml.safe_load((ROOT / "samples" / "alliance-digest-2.22.yaml").read_text())
    document = IssueDocument.model_validate(data, context={"base_url": BASE})
    content = IssueContent.model_validate(document.model_dump(exclude={"newsletter"}))
    info = NewsletterInfo(slug="alliance-digest", name="Alliance Digest",
                          from_name="Alliance Digest",
                          from_email="digest@riverside-water.example.org",
                          footer="You receive the Alliance Digest because you signed up.",
                          postal_address="Riverside Water Alliance, 12 Weir Lane, Millbrook")
    times, cpu, size = [], [], 0
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        pdf = render_pdf(content, info, base_url=BASE, date=datetime.now(UTC))
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        size = len(pdf)
    warm = statistics.median(times[1:]) if len(times) > 1 else times[0]
    warm_cpu = statistics.median(cpu[1:]) if len(cpu) > 1 else cpu[0]
    # CPU seconds say what a render costs when the machine is shared; wall time what waits.
    print(f"PDF edition of the sample issue ({size / 1024:.0f} KB): first {times[0]:.2f} s, "
          f"then median {warm:.2f} s wall, {warm_cpu:.2f} s CPU over {len(times) - 1} runs "
          "(target < 2 s)")


def bench_draft(runs: int, items: int) -> None:
    body = feed_document(items)
    httpd, hostport = serve(body)
    os.environ["MISSIVE_FETCH_ALLOW_HOSTS"] = hostport
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker, session_scope
    from app.editions import feeds

    parse_times, draft_times, draft_cpu = [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        parsed = feeds.parse(body, url=f"http://{hostport}/feed.xml")
        parse_times.append(time.perf_counter() - started)
    assert len(parsed) == items

    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            os.environ["MISSIVE_VAR_DIR"] = folder
            for cached in (get_settings, get_engine, get_sessionmaker):
                cached.cache_clear()
            from app import demo
            from app.cli import _upgrade
            from app.editions import service

            _upgrade()
            with session_scope() as session:
                newsletter = demo.load(session)
                newsletter.feed_url = f"http://{hostport}/feed.xml"
            started, started_cpu = time.perf_counter(), time.process_time()
            with session_scope() as session:
                draft = service.draft_from_feed(session, "alliance-digest")
            draft_times.append(time.perf_counter() - started)
            draft_cpu.append(time.process_time() - started_cpu)
            get_engine().dispose()
    httpd.shutdown()
    print(f"feed of {items} items ({len(body) / 1024:.0f} KB): parse and convert median "
          f"{statistics.median(parse_times):.2f} s; whole draft (fetch, parse, create the "
          f"issue with the newest {draft.items_taken}, record them as used) median "
          f"{statistics.median(draft_times):.2f} s wall, {statistics.median(draft_cpu):.2f} s "
          f"CPU over {runs} runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=200)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    bench_pdf(max(2, args.runs))
    bench_draft(args.runs, args.items)


if __name__ == "__main__":
    main()
