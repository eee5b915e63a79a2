"""The public archive: sent issues of a newsletter, their web versions and an Atom feed.

Only issues with status `sent` are visible; a draft, a scheduled issue or one still sending is
a 404 like an issue that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.config import get_settings
from app.db import SessionDep
from app.issues import service
from app.issues.models import Issue
from app.issues.render import render_feed_html
from app.newsletters.models import Newsletter
from app.web import pages

router = APIRouter(tags=["archive"])

ATOM = "http://www.w3.org/2005/Atom"
FEED_ENTRIES = 50
_CACHE = {"Cache-Control": "public, max-age=300"}
_PAGE_HEADERS = {
    **_CACHE,
    "Content-Security-Policy": "default-src 'none'; img-src https: http: data:; "
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/archive/{slug}", response_class=HTMLResponse)
def archive_index(slug: str, request: Request, session: SessionDep) -> Response:
    """Every sent issue, newest first."""
    newsletter = service.archive_newsletter(session, slug)
    base = get_settings().base_url
    issues = [
        {"label": i.label, "subject": i.subject or f"{newsletter.name} {i.label}",
         "preheader": i.preheader, "url": f"{base}/archive/{slug}/{i.volume}.{i.number}",
         "pdf_url": f"{base}/archive/{slug}/{i.volume}.{i.number}.pdf",
         "date": _day(i.sent_at), "iso": i.sent_at.isoformat() if i.sent_at else ""}
        for i in service.sent_issues(session, newsletter)
    ]
    return pages().TemplateResponse(request, "archive.html", {
        "newsletter": newsletter, "title": f"{newsletter.name}: all issues", "issues": issues,
        "feed_url": f"{base}/archive/{slug}/feed.xml",
        "subscribe_url": f"{base}/subscribe/{slug}",
    }, headers=_CACHE)  # a page of ours: the strict policy of app/headers.py


@router.get("/archive/{slug}/feed.xml")
def archive_feed(slug: str, session: SessionDep) -> Response:
    """An Atom feed (RFC 4287) of the sent issues."""
    newsletter = service.archive_newsletter(session, slug)
    issues = service.sent_issues(session, newsletter, limit=FEED_ENTRIES)
    body = atom_feed(newsletter, issues, get_settings().base_url)
    return Response(body, media_type="application/atom+xml; charset=utf-8", headers=_CACHE)


@router.get("/archive/{slug}/{number}", response_class=HTMLResponse)
def archive_issue(slug: str, number: str, session: SessionDep) -> Response:
    """The web version of a sent issue; `number` is written as in its label, "2.22"."""
    newsletter = service.archive_newsletter(session, slug)
    issue = service.sent_issue(session, newsletter, number)
    return HTMLResponse(service.web_version(issue), headers=_PAGE_HEADERS)


def _day(moment: datetime | None) -> str:
    return f"{moment.day} {moment:%B %Y}" if moment else ""


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def atom_feed(newsletter: Newsletter, entries: Sequence[Issue], base_url: str) -> bytes:
    """The feed document. Built with ElementTree, so every title and summary is escaped."""
    archive_url = f"{base_url}/archive/{newsletter.slug}"
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    feed = ET.Element(f"{{{ATOM}}}feed")
    sub(feed, "id", archive_url)
    sub(feed, "title", newsletter.name)
    if newsletter.description:
        sub(feed, "subtitle", newsletter.description)
    newest = max((i.sent_at for i in entries if i.sent_at), default=newsletter.created_at)
    sub(feed, "updated", _rfc3339(newest))
    sub(feed, "link", rel="self", type="application/atom+xml", href=f"{archive_url}/feed.xml")
    sub(feed, "link", rel="alternate", type="text/html", href=archive_url)
    author = sub(feed, "author")
    sub(author, "name", newsletter.from_name)
    sub(feed, "generator", "Missive")
    for issue in entries:
        url = f"{archive_url}/{issue.volume}.{issue.number}"
        sent = _rfc3339(issue.sent_at or issue.created_at)
        entry = sub(feed, "entry")
        sub(entry, "id", url)
        sub(entry, "title", issue.subject or f"{newsletter.name} {issue.label}")
        sub(entry, "link", rel="alternate", type="text/html", href=url)
        sub(entry, "published", sent)
        sub(entry, "updated", sent)
        sub(entry, "summary", issue.preheader or issue.label)
        sub(entry, "content", render_feed_html(service.content_of(issue)), type="html")
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))
