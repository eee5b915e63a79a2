"""Drafting the next issue from the newsletter's feed, and the alerts that tell editors of it.

A draft takes one story per feed item published since the newsletter's last sent issue that no
earlier issue has used, newest first; the newest item's image becomes the hero. The items it
takes are recorded, so no later draft takes them again (deleting the draft frees them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import fetcher
from app.config import get_settings
from app.db import utcnow
from app.editions import feeds, pdf
from app.editions import repository as repo
from app.editions.models import EditionAlert
from app.errors import Conflict, Invalid, NotFound
from app.issues import service as issues
from app.issues.models import Issue
from app.issues.render import NewsletterInfo
from app.issues.schemas import MAX_STORIES, Story
from app.newsletters import service as newsletters
from app.newsletters.models import Newsletter
from app.queue import enqueue_after_commit

FEED_ACCEPT = ("application/rss+xml, application/atom+xml, application/xml;q=0.9, "
               "text/xml;q=0.9, */*;q=0.5")
MAX_PREHEADER = 250
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~])")


@dataclass(frozen=True)
class FeedDraft:
    """What a draft from the feed came to: the new issue, or None and why not."""

    issue: Issue | None
    detail: str
    items_in_feed: int
    items_taken: int
    items_left_out: int


def _since(session: Session, newsletter: Newsletter) -> tuple[datetime | None, str]:
    last = repo.last_sent(session, newsletter.id)
    if last is None:
        return None, ""
    # An issue drafted from the feed was drafted before it was sent: what the feed published in
    # between is new too (the used-item record keeps its own items out).
    drafted = repo.issue_took_feed_items(session, last.id)
    since = last.created_at if drafted else (last.sent_at or last.created_at)
    return since, f" since {last.label}"


def _fresh(items: Sequence[feeds.FeedItem], used: set[str], since: datetime | None
           ) -> list[feeds.FeedItem]:
    """New items, newest first; undated ones (nothing says they are old) after the dated."""
    seen: set[str] = set(used)
    fresh: list[feeds.FeedItem] = []
    for item in items:
        if seen.intersection(item.keys):
            continue  # used by an earlier issue, or the same item twice in the feed
        if since is not None and item.published is not None and item.published <= since:
            continue
        seen.update(item.keys)
        fresh.append(item)
    dated = sorted((i for i in fresh if i.published is not None),
                   key=lambda i: (i.published, -i.position), reverse=True)
    return dated + [i for i in fresh if i.published is None]


def _escaped(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _story(item: feeds.FeedItem) -> dict[str, Any]:
    story = {"headline": item.title, "body": item.body, "link": item.link}
    try:
        Story.model_validate(story)
    except ValidationError:
        # Markdown the converter made that an issue refuses (a link spelled out in the text
        # itself): keep the words, as plain text.
        story["body"] = _escaped(feeds.plain_text(item.body))
    return story


def _document(newsletter: Newsletter, items: Sequence[feeds.FeedItem]) -> dict[str, Any]:
    headlines = "; ".join(i.title for i in items)
    data: dict[str, Any] = {
        "newsletter": newsletter.slug,
        "preheader": headlines if len(headlines) <= MAX_PREHEADER
        else headlines[: MAX_PREHEADER - 1].rstrip() + "…",
        "stories": [_story(i) for i in items],
    }
    image = items[0].image
    if image is not None:
        data["hero_image"] = {"url": image.url, "alt": image.alt, "credit": image.credit}
    return data


def read_feed(newsletter: Newsletter) -> list[feeds.FeedItem]:
    """Fetch (through the guarded fetcher) and parse the newsletter's feed."""
    if not newsletter.feed_url:
        raise Invalid(f"{newsletter.slug} has no feed_url: set one first")
    fetched = fetcher.fetch(newsletter.feed_url, accept=FEED_ACCEPT)
    return feeds.parse(fetched.body, url=fetched.url, content_type=fetched.content_type)


def draft_from_feed(session: Session, slug: str) -> FeedDraft:
    """Create the next issue of `slug` as a draft from its feed's new items; when the feed has
    nothing new, create nothing and say so. Fetch and parse errors are raised as 422s."""
    newsletter = newsletters.get_by_slug(session, slug)
    items = read_feed(newsletter)  # before any lock: a slow feed holds up nobody
    if repo.lock_newsletter(session, newsletter.id) is None:
        raise NotFound(f"no newsletter {slug!r}")
    since, since_text = _since(session, newsletter)
    used = repo.used_keys(session, newsletter.id, (k for i in items for k in i.keys))
    fresh = _fresh(items, used, since)
    if not fresh:
        return FeedDraft(issue=None, items_in_feed=len(items), items_taken=0, items_left_out=0,
                         detail=f"nothing new in the feed{since_text}: of its {len(items)} "
                                f"item{'' if len(items) == 1 else 's'}, none is both new and "
                                "unused; no draft made")
    taken, left_out = fresh[:MAX_STORIES], fresh[MAX_STORIES:]
    issue = issues.create(session, _document(newsletter, taken))
    try:
        with session.begin_nested():
            repo.record_used(session, newsletter.id, issue.id, (k for i in taken for k in i.keys))
    except IntegrityError as exc:
        raise Conflict("another draft was just made from this feed; look at the drafts") from exc
    detail = f"drafted {issue.label} from {len(taken)} new item{'' if len(taken) == 1 else 's'}"
    if left_out:
        detail += (f"; {len(left_out)} older new items were left out (an issue holds at most "
                   f"{MAX_STORIES} stories) and may go into the next draft")
    return FeedDraft(issue=issue, items_in_feed=len(items), items_taken=len(taken),
                     items_left_out=len(left_out), detail=detail)


def draft_answer(draft: FeedDraft) -> dict[str, Any]:
    """The API's answer: the issue shape plus `detail`, or `{"created": null, "detail"}`."""
    if draft.issue is None:
        return {"created": None, "detail": draft.detail}
    return {**issues.to_out(draft.issue).model_dump(mode="json"), "detail": draft.detail,
            "feed_items": {"in_feed": draft.items_in_feed, "taken": draft.items_taken,
                           "left_out": draft.items_left_out}}


# --- alerts for the editors -------------------------------------------------------------------


def alert(session: Session, newsletter: Newsletter, kind: str, message: str, *,
          issue: Issue | None = None, mail: bool = True) -> EditionAlert:
    """Store an alert for the dashboard and, after commit, mail it to the editors."""
    record = EditionAlert(newsletter_id=newsletter.id, issue_id=issue.id if issue else None,
                          kind=kind, message=message)
    session.add(record)
    session.flush()
    if mail and editor_addresses(newsletter):
        enqueue_after_commit(session, "missive.mail_edition_alert", record.id)
    return record


def editor_addresses(newsletter: Newsletter) -> list[str]:
    """Who hears of drafts made from the feed: the listed editors, else the reply-to."""
    listed = [str(a) for a in (newsletter.editor_emails or []) if a]
    return listed or ([newsletter.reply_to] if newsletter.reply_to else [])


def list_alerts(session: Session, *, newsletter: str | None = None,
                include_dismissed: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    """Alerts for a dashboard, newest first (for the web admin and the API)."""
    newsletter_id = newsletters.get_by_slug(session, newsletter).id if newsletter else None
    rows = repo.alerts(session, newsletter_id=newsletter_id, include_dismissed=include_dismissed,
                       limit=limit)
    return [{"id": a.id, "newsletter_id": a.newsletter_id, "issue_id": a.issue_id,
             "kind": a.kind, "message": a.message, "created_at": a.created_at,
             "mailed_at": a.mailed_at, "dismissed_at": a.dismissed_at} for a in rows]


def dismiss_alert(session: Session, alert_id: int) -> EditionAlert:
    """Mark an alert as seen; it no longer shows on the dashboard."""
    record = session.get(EditionAlert, alert_id)
    if record is None:
        raise NotFound(f"no alert {alert_id}")
    record.dismissed_at = record.dismissed_at or utcnow()
    session.flush()
    return record


# --- the PDF edition --------------------------------------------------------------------------


def issue_pdf(issue: Issue, *, page_size: pdf.PageSize = "a4") -> bytes:
    """The issue's PDF edition (made once per content and page size, then kept). Slow the
    first time: call from sync code. The date printed is the send date, or today for a draft."""
    return pdf.cached_pdf(
        issue.id, issues.content_of(issue), NewsletterInfo.of(issue.newsletter),
        base_url=get_settings().base_url, date=issue.sent_at or utcnow(), page_size=page_size,
        own_url=issues.pdf_url(issue))


def archive_pdf(session: Session, slug: str, number: str, *, page_size: pdf.PageSize = "a4"
                ) -> tuple[Issue, bytes]:
    """The PDF edition of a sent issue ("2.22"); NotFound before it is sent."""
    issue = issues.sent_issue(session, issues.archive_newsletter(session, slug), number)
    return issue, issue_pdf(issue, page_size=page_size)


def pdf_filename(issue: Issue) -> str:
    return f"{issue.newsletter.slug}-{issue.volume}.{issue.number}.pdf"
