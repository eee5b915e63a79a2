"""What the newsroom pages show, assembled from the other packages' services and queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import AppError
from app.newsletters.models import Newsletter
from app.newsroom import queries
from app.newsroom.queries import Scope
from app.sending import service as sending
from app.sending.models import Send

STATUSES = ("active", "pending", "unsubscribed")


@dataclass
class NewsletterSummary:
    newsletter: Newsletter
    counts: dict[str, int]
    new_30_days: int
    next_slot: datetime | None
    last_send: dict[str, Any] | None


@dataclass
class Dashboard:
    newsletters: list[NewsletterSummary]
    paused: list[Send]
    unknown: list[tuple[Send, int]]
    blocked: list[Newsletter]
    policy_rejections: int
    alerts: int = field(init=False)

    def __post_init__(self) -> None:
        self.alerts = (len(self.paused) + len(self.unknown) + len(self.blocked)
                       + (1 if self.policy_rejections else 0))


def _next_slot(newsletter: Newsletter) -> datetime | None:
    try:
        return sending.next_slot(newsletter)
    except AppError:
        return None


def dashboard(session: Session, scope: Scope) -> Dashboard:
    """Per newsletter: readers by status and growth, the next slot, the last send; and what
    needs an editor's attention."""
    since = utcnow() - timedelta(days=30)
    summaries = []
    visible = queries.newsletters(session, scope)
    for newsletter in visible:
        last = queries.last_send(session, newsletter.id)
        summaries.append(NewsletterSummary(
            newsletter=newsletter,
            counts={s: 0 for s in STATUSES} | queries.subscription_counts(session, newsletter.id),
            new_30_days=queries.new_since(session, newsletter.id, since),
            next_slot=_next_slot(newsletter),
            last_send=sending.report(session, last) if last is not None else None,
        ))
    return Dashboard(
        newsletters=summaries,
        paused=list(queries.paused_sends(session, scope)),
        unknown=queries.sends_with_unknown(session, scope),
        blocked=[n for n in visible if n.sending_blocked_by is not None],
        policy_rejections=queries.policy_rejections(session, scope),
    )


FINISHED = ("done", "cancelled")


def progress(session: Session, send: Send) -> dict[str, Any]:
    """A send's counts by state with its rate and an estimate of the time left."""
    report = sending.report(session, send)
    handled = sum(report[k] for k in ("sent", "failed", "bounced", "skipped", "unknown"))
    report["handled"] = handled
    report["percent"] = round(100 * handled / report["total"], 1) if report["total"] else (
        100.0 if send.status in FINISHED else 0.0)
    rate = None
    if send.started_at is not None and handled:
        end = send.finished_at or utcnow()
        seconds = max((end - send.started_at).total_seconds(), 0.001)
        rate = handled / seconds
    report["rate_per_second"] = round(rate, 1) if rate else None
    remaining = report["pending"]
    report["seconds_left"] = (
        round(remaining / rate) if rate and remaining and send.status == "running" else None)
    report["finished"] = send.status in FINISHED
    return report
