"""Feeds the tests serve: RSS 2.0 and Atom documents built from a few item descriptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape


@dataclass
class Item:
    title: str
    link: str
    html: str = ""
    published: datetime | str | None = None  # a str is written as it is (odd dates)
    guid: str | None = None
    image: str | None = None
    credit: str | None = None
    enclosure: str | None = None


def _rss_date(value: datetime | str | None) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else format_datetime(value)
    return f"<pubDate>{escape(text)}</pubDate>"


def rss(items: list[Item], title: str = "Riverside Water News") -> str:
    parts = []
    for item in items:
        media = ""
        if item.image:
            credit = f"<media:credit>{escape(item.credit)}</media:credit>" if item.credit else ""
            media = (f'<media:content url="{escape(item.image)}" medium="image">'
                     f"<media:description>Picture for {escape(item.title)}</media:description>"
                     f"{credit}</media:content>")
        enclosure = (f'<enclosure url="{escape(item.enclosure)}" type="image/jpeg" length="1"/>'
                     if item.enclosure else "")
        guid = f"<guid isPermaLink=\"false\">{escape(item.guid)}</guid>" if item.guid else ""
        parts.append(
            f"<item><title>{escape(item.title)}</title><link>{escape(item.link)}</link>{guid}"
            f"{_rss_date(item.published)}<description>{escape(item.html)}</description>"
            f"{media}{enclosure}</item>")
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
            f"<channel><title>{escape(title)}</title><link>https://riverside-water.example.org/"
            f"</link><description>News</description>{''.join(parts)}</channel></rss>")


def atom(items: list[Item], title: str = "Riverside Water News") -> str:
    parts = []
    for item in items:
        when = item.published
        stamp = when if isinstance(when, str) else when.isoformat() if when else ""
        dates = f"<updated>{escape(stamp)}</updated><published>{escape(stamp)}</published>" \
            if stamp else ""
        enclosure = (f'<link rel="enclosure" type="image/png" href="{escape(item.enclosure)}"/>'
                     if item.enclosure else "")
        parts.append(
            f"<entry><title type=\"html\">{escape(item.title)}</title>"
            f'<link rel="alternate" type="text/html" href="{escape(item.link)}"/>{enclosure}'
            f"<id>{escape(item.guid or item.link)}</id>{dates}"
            f'<summary type="html">{escape(item.html)}</summary></entry>')
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>{escape(title)}</title><id>urn:riverside:news</id>"
            "<updated>2026-11-20T00:00:00Z</updated>"
            f"{''.join(parts)}</feed>")
