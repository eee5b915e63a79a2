from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Newsletter(Base):
    __tablename__ = "newsletters"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    from_name: Mapped[str] = mapped_column(String(200))
    from_email: Mapped[str] = mapped_column(String(254))
    reply_to: Mapped[str | None] = mapped_column(String(254))
    footer: Mapped[str] = mapped_column(Text, default="")
    postal_address: Mapped[str] = mapped_column(Text, default="")
    # "biweekly", "weekly", "monthly" or "none"; slots are counted from `cadence_anchor`.
    cadence: Mapped[str] = mapped_column(String(16), default="biweekly")
    cadence_anchor: Mapped[datetime | None]
    # Set when a send's complaint rate passed the limit: no send until an editor acknowledges.
    sending_blocked_by: Mapped[int | None]
    sending_blocked_reason: Mapped[str | None] = mapped_column(Text)
    # Drafts from the publisher's feed (RSS or Atom). `feed_drafts`: "off", "notify" (beat
    # drafts the issue `feed_draft_hours_before` each slot and tells the editors) or
    # "schedule" (and schedules it for the slot when the pre-send checks pass).
    feed_url: Mapped[str | None] = mapped_column(String(2000))
    feed_drafts: Mapped[str] = mapped_column(String(16), default="off")
    feed_draft_hours_before: Mapped[int] = mapped_column(default=48)
    # Who is told about those drafts; empty: the reply-to address.
    editor_emails: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # The slot beat last drafted for, so each slot is drafted once.
    feed_drafted_slot: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
