"""The PDF edition: the issue printed from its data with its own print template (WeasyPrint).

Pages carry the masthead and label, numbered pages, a contents list linking to each section;
text stays text (selectable, fonts embedded as subsets) and the PDF is tagged for screen
readers. Images come only from this server's /static files (read from disk) or through the
guarded fetcher, within a budget, so an issue full of images cannot hold a render for long.

A PDF is made once per issue content and page size and kept under `var/editions/` by a hash of
everything it is made from: an issue edited before sending gets a new one, a sent issue never
changes. Rendering takes a second or more: call it from sync code (a sync route runs in a
thread), never from an `async def`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import asdict
from datetime import datetime
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from app import fetcher, media_links
from app.config import get_settings
from app.issues import markdown
from app.issues.models import issue_label
from app.issues.render import NewsletterInfo
from app.issues.schemas import IssueContent
from app.web import TEMPLATES_DIR

log = logging.getLogger("missive.editions.pdf")

PageSize = Literal["a4", "letter"]
PAGE_SIZES: dict[str, str] = {"a4": "A4", "letter": "letter"}
# Bumped when the print template or options change, so kept PDFs are made again.
PRINT_VERSION = "1"
MAX_IMAGES = 12
IMAGE_BYTES = 5 * 1024 * 1024
IMAGE_SECONDS = 10.0
IMAGES_BUDGET_SECONDS = 30.0


@lru_cache
def print_env() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR / "print")),
        autoescape=select_autoescape(enabled_extensions=("html",)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache
def _guarded_images_class() -> type[Any]:
    # WeasyPrint takes seconds to import: only the processes that print pay for it.
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class GuardedImages(URLFetcher):  # type: ignore[misc]
        """WeasyPrint's fetcher, narrowed: this server's own files (/static, uploaded /media)
        from disk, never over HTTP; other http(s) images through the guarded fetcher, at most
        MAX_IMAGES within a time budget; else nothing (WeasyPrint leaves the image out and
        keeps going)."""

        def __init__(self, base_url: str) -> None:
            super().__init__(timeout=IMAGE_SECONDS, allowed_protocols=("http", "https"),
                             allow_redirects=False, fail_on_errors=False)
            self.base_url = base_url.rstrip("/")
            self.fetched = 0
            self.deadline = time.monotonic() + IMAGES_BUDGET_SECONDS

        def fetch(self, url: str, headers: Any = None) -> Any:
            own = media_links.own_path(url, self.base_url)
            if own is not None and own.startswith(("/static/", "/media/")):
                return self._own(url, own)
            self.fetched += 1
            left = self.deadline - time.monotonic()
            if self.fetched > MAX_IMAGES or left <= 0:
                raise ValueError(f"image budget spent, {url} left out")
            got = fetcher.fetch(url, accept="image/*", max_bytes=IMAGE_BYTES,
                                timeout=min(IMAGE_SECONDS, left))
            return URLFetcherResponse(got.url, body=got.body,
                                      headers={"Content-Type": got.content_type})

        def _own(self, url: str, own: str) -> Any:
            path = media_links.local_file(own)
            if path is None:
                raise ValueError(f"no file {own[:200]!r} on this server")
            return URLFetcherResponse(url, body=path.read_bytes())

    return GuardedImages


def guarded_images(base_url: str) -> Any:
    """A WeasyPrint URL fetcher that fetches images only as Missive allows."""
    return _guarded_images_class()(base_url)


def _context(content: IssueContent, newsletter: NewsletterInfo, *, base_url: str,
             date: datetime, page_size: PageSize, own_url: str | None) -> dict[str, Any]:
    archive_url = f"{base_url}/archive/{newsletter.slug}"
    footer = content.footer if content.footer is not None else newsletter.footer
    hero = content.hero_image
    if hero is not None and not markdown.is_absolute_url(hero.url, ("http", "https")):
        hero = None
    return {
        "newsletter": newsletter,
        "label": issue_label(content.volume, content.number),
        "subject": content.subject or f"{newsletter.name} "
                                      f"{issue_label(content.volume, content.number)}",
        "preheader": content.preheader,
        "date_text": f"{date.day} {date:%B %Y}",
        "date_iso": date.date().isoformat(),
        "hero": hero,
        "stories": [{"anchor": f"story-{i}", "headline": s.headline,
                     "html": markdown.to_html(s.body), "link": s.link}
                    for i, s in enumerate(content.stories, 1)],
        # The PDF does not need a link to itself.
        "links": [link for link in content.links if link.url != own_url],
        "footer_html": markdown.to_html(footer) if footer else Markup(""),
        "subscribe_url": f"{base_url}/subscribe/{newsletter.slug}",
        "archive_url": archive_url,
        "page_size": PAGE_SIZES[page_size],
    }


def print_html(content: IssueContent, newsletter: NewsletterInfo, *, base_url: str,
               date: datetime, page_size: PageSize = "a4", own_url: str | None = None) -> str:
    """The print template rendered: the HTML the PDF is made from."""
    return print_env().get_template("issue.html").render(_context(
        content, newsletter, base_url=base_url.rstrip("/"), date=date, page_size=page_size,
        own_url=own_url))


# WeasyPrint's line breaking grows much faster than linearly with the length of an unbroken
# word (measured: 2,400 characters cost about 0.7 s, 9,600 many seconds), so long runs get a
# zero-width break opportunity every few characters, in text only (never in a tag or entity).
_LONG_RUN = re.compile(r"[^\s<>&;\u200b]{48,}")
_TEXT = re.compile(r">([^<]+)<")


def _breakable(html: str) -> str:
    def split(run: re.Match[str]) -> str:
        word = run.group(0)
        return "\u200b".join(word[i:i + 24] for i in range(0, len(word), 24))

    return _TEXT.sub(lambda m: ">" + _LONG_RUN.sub(split, m.group(1)) + "<", html)


def render_pdf(content: IssueContent, newsletter: NewsletterInfo, *, base_url: str,
               date: datetime, page_size: PageSize = "a4", own_url: str | None = None) -> bytes:
    """The PDF edition of an issue. Slow (a second or more) and blocking."""
    html = print_html(content, newsletter, base_url=base_url, date=date, page_size=page_size,
                      own_url=own_url)
    import weasyprint

    document = weasyprint.HTML(string=_breakable(html), base_url=base_url,
                               url_fetcher=guarded_images(base_url))
    pdf = document.write_pdf(pdf_tags=True, pdf_variant="pdf/ua-1", custom_metadata=False)
    assert isinstance(pdf, bytes)
    return pdf


# --- kept PDFs --------------------------------------------------------------------------------

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def cache_key(content: IssueContent, newsletter: NewsletterInfo, *, base_url: str,
              date: datetime, page_size: PageSize, own_url: str | None) -> str:
    """A hash of everything the PDF is made from."""
    material = json.dumps({
        "v": PRINT_VERSION, "weasyprint": version("weasyprint"),
        "content": content.model_dump(mode="json"), "newsletter": asdict(newsletter),
        "base_url": base_url, "date": date.date().isoformat(), "size": page_size,
        "own_url": own_url,
    }, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def cached_pdf(issue_id: int, content: IssueContent, newsletter: NewsletterInfo, *,
               base_url: str, date: datetime, page_size: PageSize = "a4",
               own_url: str | None = None) -> bytes:
    """The issue's PDF, made once and kept under var/editions/ until its content changes."""
    key = cache_key(content, newsletter, base_url=base_url, date=date, page_size=page_size,
                    own_url=own_url)
    folder = get_settings().var_dir / "editions"
    prefix = f"issue-{issue_id}-{page_size}-"
    path = folder / f"{prefix}{key}.pdf"
    with _locks_guard:
        lock = _locks.setdefault(f"{issue_id}-{page_size}", threading.Lock())
    with lock:  # one render at a time per issue and size in this process
        if path.is_file():
            return path.read_bytes()
        started = time.perf_counter()
        pdf = render_pdf(content, newsletter, base_url=base_url, date=date,
                         page_size=page_size, own_url=own_url)
        log.info("rendered the PDF of issue %d (%s) in %.2fs", issue_id, page_size,
                 time.perf_counter() - started)
        _keep(folder, path, prefix, pdf)
        return pdf


def _keep(folder: Path, path: Path, prefix: str, pdf: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: another process reading it sees a whole file or none.
    tmp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_bytes(pdf)
    os.replace(tmp, path)
    for old in folder.glob(f"{prefix}*.pdf"):
        if old != path:
            old.unlink(missing_ok=True)
