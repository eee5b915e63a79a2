"""Drafts on the cadence: `beat` drafts each newsletter's issue from its feed a set time before
each slot and tells the editors, or (when they chose it) schedules the draft for the slot once
the pre-send checks pass. Each slot is drafted once, whichever beat gets there first."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.db import session_scope, utcnow
from app.editions import repository as repo
from app.editions import service
from app.errors import AppError
from app.issues import service as issues
from app.issues.models import Issue
from app.mail import compose
from app.mail.transport import Transport
from app.newsletters.models import Newsletter

log = logging.getLogger("missive.editions")

HEADLINES = {
    "feed_draft": "the next issue is drafted from the feed",
    "feed_scheduled": "the next issue is drafted and scheduled",
    "feed_nothing_new": "nothing new in the feed for the next issue",
    "feed_failed": "the next issue could not be drafted",
    "feed_checks_failed": "the drafted issue fails its checks and is not scheduled",
}


def _when(moment: datetime) -> str:
    return moment.strftime("%A %d %B %Y, %H:%M UTC")


def _slot_due(newsletter: Newsletter, now: datetime) -> datetime | None:
    from app.sending.service import next_slot

    try:
        slot = next_slot(newsletter, now)
    except AppError:
        return None  # no cadence any more: nothing to draft for
    if now < slot - timedelta(hours=newsletter.feed_draft_hours_before):
        return None
    return None if newsletter.feed_drafted_slot == slot else slot


def draft_due(now: datetime | None = None) -> list[str]:
    """For beat: draft every newsletter whose next slot is near enough and not drafted yet;
    returns what was done, one line each. Each newsletter in its own transaction."""
    now = now or utcnow()
    with session_scope() as session:
        due = [(n.id, slot) for n in repo.feed_drafting(session)
               if (slot := _slot_due(n, now)) is not None]
    done = []
    for newsletter_id, slot in due:
        with session_scope() as session:
            newsletter = repo.claim_slot(session, newsletter_id, slot)
            if newsletter is not None:
                done.append(_draft_for_slot(session, newsletter, slot))
    return done


def _draft_for_slot(session: Session, newsletter: Newsletter, slot: datetime) -> str:
    from app.sending import service as sending

    newsletter.feed_drafted_slot = slot
    try:
        with session.begin_nested():
            draft = service.draft_from_feed(session, newsletter.slug)
    except AppError as exc:
        message = (f"Missive could not draft the issue of {newsletter.name} for "
                   f"{_when(slot)} from its feed: {exc.detail}. Draft it by hand, or fix the "
                   "feed and run `missive issue draft-from-feed` again.")
        service.alert(session, newsletter, "feed_failed", message)
        return f"{newsletter.slug}: {exc.detail}"
    if draft.issue is None:
        service.alert(session, newsletter, "feed_nothing_new",
                      f"{draft.detail.capitalize()}. Nothing is scheduled for {_when(slot)}.")
        return f"{newsletter.slug}: {draft.detail}"
    issue = draft.issue
    subject = issues.to_out(issue).subject
    if newsletter.feed_drafts != "schedule":
        service.alert(session, newsletter, "feed_draft",
                      f"{issue.label} ({subject}) is drafted from the feed for the slot of "
                      f"{_when(slot)}: {draft.detail}. Review it and schedule it.", issue=issue)
        return f"{newsletter.slug}: {draft.detail}"
    try:
        with session.begin_nested():
            sending.schedule(session, issue.id, at=slot, next_cadence_slot=False, actor="beat")
    except AppError as exc:
        service.alert(session, newsletter, "feed_checks_failed",
                      f"{issue.label} ({subject}) is drafted from the feed but not scheduled for "
                      f"{_when(slot)}: {_reason(exc.detail)}. Fix it and schedule it.",
                      issue=issue)
        return f"{newsletter.slug}: drafted {issue.label}, not scheduled"
    service.alert(session, newsletter, "feed_scheduled",
                  f"{issue.label} ({subject}) is drafted from the feed and scheduled for "
                  f"{_when(slot)}: {draft.detail}. Cancel its send to stop it.", issue=issue)
    return f"{newsletter.slug}: drafted {issue.label}, scheduled for {slot.isoformat()}"


def _reason(detail: Any) -> str:
    if isinstance(detail, dict):
        problems = detail.get("problems") or []
        return f"{detail.get('message', 'refused')} ({'; '.join(map(str, problems))})"
    return str(detail)


def mail_alert(session: Session, alert_id: int, transport: Transport) -> int:
    """Mail one alert to the newsletter's editors, once; returns how many were mailed."""
    from app.config import get_settings
    from app.editions.models import EditionAlert

    record = session.get(EditionAlert, alert_id, with_for_update=True)
    if record is None or record.mailed_at is not None:
        return 0
    newsletter = session.get(Newsletter, record.newsletter_id)
    if newsletter is None:
        return 0
    preview = None
    if record.issue_id is not None and (issue := session.get(Issue, record.issue_id)):
        preview = issues.to_out(issue).preview_url
    addresses = service.editor_addresses(newsletter)
    for address in addresses:
        message = compose.build(
            template="edition_alert", newsletter=newsletter, to=compose.recipient("", address),
            subject=f"[{newsletter.name}] {HEADLINES.get(record.kind, 'news from Missive')}",
            context={"headline": HEADLINES.get(record.kind, "news from Missive").capitalize(),
                     "message": record.message, "preview_url": preview},
        )
        transport.send(get_settings().bounce_address, [address], message)
    record.mailed_at = utcnow()
    return len(addresses)
