from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.sending.models import BigId


class BounceRecord(Base):
    """One bounce or complaint, however it came in, in one normalised shape."""

    __tablename__ = "bounces"
    __table_args__ = (
        Index("ix_bounces_email_kind_time", "email_key", "kind", "occurred_at"),
        Index("ix_bounces_send_kind", "send_id", "kind"),
        Index("ix_bounces_send_reason", "send_id", "reason"),
        # The dashboard's recent policy rejections.
        Index("ix_bounces_kind_received", "kind", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivery_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    send_id: Mapped[int | None] = mapped_column(ForeignKey("sends.id", ondelete="SET NULL"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    email_key: Mapped[str | None] = mapped_column(String(254))
    # hard | soft | policy | complaint
    kind: Mapped[str] = mapped_column(String(16))
    # Why, in the vocabulary of app.bounces.reasons (userunknown, mailboxfull, blocked, …);
    # the kind above follows from it.
    reason: Mapped[str] = mapped_column(String(16), default="undefined",
                                        server_default="undefined")
    status_code: Mapped[str | None] = mapped_column(String(16))
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    # dsn | arf | flufl | smtp | ses | sendgrid | postmark | mailgun
    source: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(255))
    # What the policy did: "suppressed", "unsubscribed", "counted", "alerted", "none".
    action: Mapped[str] = mapped_column(String(32), default="none")
