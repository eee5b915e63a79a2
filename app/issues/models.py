from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONDict, utcnow

if TYPE_CHECKING:
    from app.newsletters.models import Newsletter

ISSUE_STATUSES = ("draft", "scheduled", "sending", "sent")


class Issue(Base):
    """One numbered issue of a newsletter ("Vol 2.22"), written as data.

    Stories, links and the hero image are kept as JSON documents on the row: they are always
    read and written with the issue as a whole and never queried on their own.
    """

    __tablename__ = "issues"
    __table_args__ = (
        UniqueConstraint("newsletter_id", "volume", "number"),
        CheckConstraint(
            "status IN ('draft', 'scheduled', 'sending', 'sent')", name="status"
        ),
        Index("ix_issues_newsletter_status_sent", "newsletter_id", "status", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    volume: Mapped[int]
    number: Mapped[int]
    # None: the default subject, "<newsletter name> Vol V.N", which follows renumbering.
    subject: Mapped[str | None] = mapped_column(String(250))
    preheader: Mapped[str] = mapped_column(String(250), default="")
    hero_image: Mapped[dict[str, Any] | None] = mapped_column(JSONDict)
    stories: Mapped[list[dict[str, Any]]] = mapped_column(JSONDict, default=list)
    links: Mapped[list[dict[str, Any]]] = mapped_column(JSONDict, default=list)
    # None: the newsletter's footer.
    footer: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    # Part of every preview key; raising it revokes the keys given out before.
    preview_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    newsletter: Mapped[Newsletter] = relationship()

    @property
    def label(self) -> str:
        return issue_label(self.volume, self.number)


def issue_label(volume: int, number: int) -> str:
    """How an issue is named to readers: "Vol 2.22"."""
    return f"Vol {volume}.{number}"
