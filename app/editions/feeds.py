"""Reading a publisher's feed (RSS 2.0 or Atom) into items an issue can be drafted from.

feedparser parses and sanitises (scripts, event handlers and `javascript:` links go, relative
links are made absolute); markdownify turns the remaining HTML into the Markdown stories are
written in. Only what an issue can hold is kept: links must be absolute http(s) or mailto, and
images in an item's text are left out (the newest item's own image becomes the hero).
"""

from __future__ import annotations

import calendar
import hashlib
import re
import xml.sax
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import feedparser
from bs4 import BeautifulSoup
from markdownify import MarkdownConverter

from app.errors import Invalid
from app.issues.markdown import is_absolute_url
from app.issues.schemas import MAX_BODY

MAX_HEADLINE = 300
MAX_CREDIT = 300
MAX_ALT = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE = re.compile(r"\s+")
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f<>\"\\`{}|^]")
_BLANK_LINES = re.compile(r"\n{3,}")


class FeedInvalid(Invalid):
    """The document fetched is not a feed Missive can read; `detail` says why."""


@dataclass(frozen=True)
class FeedImage:
    url: str
    alt: str
    credit: str


@dataclass(frozen=True)
class FeedItem:
    """One entry of a feed, cleaned for an issue."""

    keys: tuple[str, ...]  # hashes of its id and its link: used once means used
    title: str
    link: str | None
    body: str  # Markdown
    published: datetime | None
    image: FeedImage | None
    position: int  # where it stood in the feed (0 first)


# --- HTML to Markdown -------------------------------------------------------------------------


def clean_url(url: Any, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """An absolute URL of one of `schemes` that is safe to write into Markdown, or None."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    # Spaces and the like are escaped rather than refused: feeds are not always tidy.
    url = quote(url, safe=":/?#[]@!$&'*+,;=%~()-._")
    if len(url) > 2000 or _URL_UNSAFE.search(url) or not is_absolute_url(url, schemes):
        return None
    return str(url).replace("(", "%28").replace(")", "%29")


class _StoryMarkdown(MarkdownConverter):
    """markdownify, with links an issue can carry, no images and no headings inside a story."""

    def convert_a(self, el: Any, text: str, parent_tags: Any) -> str:
        href = clean_url(el.get("href"), ("http", "https", "mailto"))
        if href is None:
            return text
        el.attrs = {"href": href}
        # The stub file does not list the per-tag converters.
        return str(getattr(super(), "convert_a")(el, text, parent_tags))  # noqa: B009

    def convert_img(self, el: Any, text: str, parent_tags: Any) -> str:
        return ""

    def _heading(self, el: Any, text: str, parent_tags: Any) -> str:
        text = text.strip()
        return f"\n\n**{text}**\n\n" if text else ""

    convert_h1 = convert_h2 = convert_h3 = convert_h4 = convert_h5 = convert_h6 = _heading


_converter = _StoryMarkdown(heading_style="ATX", bullets="-", strip=["iframe", "video", "audio",
                                                                    "object", "embed", "form"])


def html_to_markdown(html: str) -> str:
    """A story body from an item's (already sanitised) HTML."""
    text = str(_converter.convert(html))
    text = _CONTROL.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text).strip()
    if len(text) > MAX_BODY:
        cut = text.rfind("\n\n", 0, MAX_BODY - 10)
        text = text[: cut if cut > 0 else MAX_BODY - 10].rstrip() + "\n\n…"
    return text


def plain_text(html_or_text: str) -> str:
    """One line of text from a title or credit that may hold markup."""
    if "<" in html_or_text or "&" in html_or_text:
        html_or_text = BeautifulSoup(html_or_text, "html.parser").get_text()
    return _SPACE.sub(" ", _CONTROL.sub("", html_or_text)).strip()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- items ------------------------------------------------------------------------------------


def item_keys(guid: str | None, link: str | None) -> tuple[str, ...]:
    """What marks an item as used: its id and its link, hashed (either one matching counts)."""
    keys = [f"id:{guid.strip()}" for guid in [guid] if guid and guid.strip()]
    keys += [f"link:{link}" for link in [link] if link]
    return tuple(hashlib.sha256(k.encode()).hexdigest() for k in keys)


def _published(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, OSError):
                return None
    return None


def _image(entry: Any, title: str) -> FeedImage | None:
    candidates: list[str] = []
    for media in entry.get("media_content", []) or []:
        kind = str(media.get("medium") or media.get("type") or "image")
        if kind == "image" or kind.startswith("image/"):
            candidates.append(media.get("url"))
    for link in entry.get("links", []) or []:
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/"):
            candidates.append(link.get("href"))
    for thumb in entry.get("media_thumbnail", []) or []:
        candidates.append(thumb.get("url"))
    url = next((u for u in map(clean_url, candidates) if u), None)
    if url is None:
        return None
    credits = entry.get("media_credit") or []
    credit = plain_text(str(credits[0].get("content", ""))) if credits else ""
    if not credit and entry.get("credit"):
        credit = plain_text(str(entry.get("credit")))
    # feedparser folds media:description into the summary, so the item's title is the alt.
    return FeedImage(url=url, alt=_clip(title, MAX_ALT),
                     credit=_clip(credit, MAX_CREDIT) if credit else "")


def _body(entry: Any) -> str:
    source = entry.get("summary") or ""
    if not source and entry.get("content"):
        source = entry["content"][0].get("value", "")
    # feedparser hands plain-text summaries over as text; markdownify leaves such text be.
    return html_to_markdown(source) if source else ""


def _item(entry: Any, position: int) -> FeedItem:
    link = clean_url(entry.get("link"))
    body = _body(entry)
    title = plain_text(str(entry.get("title") or ""))
    if not title:
        title = plain_text(body.split("\n", 1)[0]) or "Untitled"
    title = _clip(title, MAX_HEADLINE)
    guid = entry.get("id")
    return FeedItem(keys=item_keys(str(guid) if guid else None, link), title=title, link=link,
                    body=body, published=_published(entry), image=_image(entry, title),
                    position=position)


def parse(data: bytes, *, url: str, content_type: str = "") -> list[FeedItem]:
    """The items of an RSS or Atom document, in feed order; FeedInvalid when it is not one."""
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(data, response_headers=headers, sanitize_html=True,
                              resolve_relative_uris=True)
    problem = parsed.get("bozo_exception")
    if isinstance(problem, xml.sax.SAXParseException):
        raise FeedInvalid(f"the feed at {url} is not well-formed XML (line "
                          f"{problem.getLineNumber()}, column {problem.getColumnNumber()}: "
                          f"{problem.getMessage()})")
    if not parsed.get("version"):
        raise FeedInvalid(f"{url} is not an RSS or Atom feed")
    return [_item(entry, i) for i, entry in enumerate(parsed.entries)]
