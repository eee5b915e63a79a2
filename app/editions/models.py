"""What the editions remember: feed items an issue has used, and alerts for the editors."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

ALERT_KINDS = ("feed_draft", "feed_scheduled", "feed_nothing_new", "feed_failed",
               "feed_checks_failed")


class FeedItemUse(Base):
    """A feed item (by a hash of its id or of its link) taken into an issue, never again.

    Deleting the draft that took it frees the item for the next draft.
    """

    __tablename__ = "feed_item_uses"
    __table_args__ = (UniqueConstraint("newsletter_id", "item_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"),
                                          index=True)
    # sha256 of "id:<guid>" or "link:<url>": an item counts as used when either is known.
    item_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EditionAlert(Base):
    """Something the editors should see on their dashboard (and get by mail): a draft made
    from the feed for the coming slot, a draft scheduled, or why neither happened."""

    __tablename__ = "edition_alerts"
    __table_args__ = (Index("ix_edition_alerts_newsletter_created", "newsletter_id",
                            "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    mailed_at: Mapped[datetime | None]
    dismissed_at: Mapped[datetime | None]
