from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow

if TYPE_CHECKING:
    from app.issues.models import Issue

SEND_STATUSES = ("scheduled", "running", "paused", "cancelled", "done")
# pending → claimed → sent | failed | bounced | skipped; a claimed row whose SMTP exchange had
# begun when its worker vanished becomes `unknown` and is never resent automatically.
DELIVERY_STATUSES = ("pending", "claimed", "sent", "failed", "bounced", "skipped", "unknown")

# 64-bit ids on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Send(Base):
    """The sending of one issue to its newsletter's audience. At most one per issue."""

    __tablename__ = "sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    scheduled_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    total: Mapped[int] = mapped_column(default=0)
    snapshot_seconds: Mapped[float | None]
    # Why the send paused itself (or was paused), shown to the editor.
    pause_reason: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    # While the SMTP server pushes back (421, 454, down), nobody sends before this time.
    throttle_until: Mapped[datetime | None]
    throttle_level: Mapped[int] = mapped_column(default=0)
    last_success_at: Mapped[datetime | None]
    # Last time a worker made progress; `beat` re-kicks a running send that has gone quiet.
    last_activity_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    issue: Mapped[Issue] = relationship()

    def pause(self, reason: str) -> None:
        """Stop handing out this send's rows until an editor resumes it, saying why.

        Every pause goes through here (an editor, the engine, the bounce policy). It sits on
        the model, below `app.sending.service`, so the bounce policy can pause a send without
        importing the sending service (which imports the bounce policy).
        """
        self.status = "paused"
        self.pause_reason = reason


class Delivery(Base):
    """One reader's copy of one send: the ledger row that makes sending exactly-once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("send_id", "subscriber_id"),
        # Claims walk pending rows of a send in id order: this index serves them directly.
        Index("ix_deliveries_send_status_id", "send_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # The fencing token of the claim that holds the row (fresh for every claim): a worker may
    # mark started, and record outcomes for, only rows that still carry its token. Kept on a
    # row that became `unknown`, so the worker that started it can still record what happened.
    claim_token: Mapped[int | None] = mapped_column(BigInteger)
    lease_until: Mapped[datetime | None]
    # Set just before the SMTP exchange begins: a vanished worker's row with this set may have
    # been delivered, so it becomes `unknown` rather than `pending`.
    started_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    smtp_code: Mapped[int | None]
    smtp_reply: Mapped[str | None] = mapped_column(Text)
