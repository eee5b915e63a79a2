from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONDict, utcnow

if TYPE_CHECKING:
    from app.newsletters.models import Newsletter


class Subscriber(Base):
    """A reader, one per address. `email_key` (the address lowercased) makes it unique."""

    __tablename__ = "subscribers"
    # On PostgreSQL, migration 0013 adds trigram (pg_trgm) indexes on email_key and name for
    # the subscriber search (substring LIKE); they have no SQLite form, so they live there only.

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )


class Subscription(Base):
    """One subscriber on one newsletter, with where they stand."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "newsletter_id"),
        # Counts by status, and the dashboard's growth (a range of confirmed_at).
        Index("ix_subscriptions_newsletter_status_confirmed", "newsletter_id", "status",
              "confirmed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    newsletter_id: Mapped[int] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    source: Mapped[str] = mapped_column(String(32), default="form")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmation_sent_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    newsletter: Mapped[Newsletter] = relationship()


class ConsentEvent(Base):
    """Append-only record of how consent was given or withdrawn. Rows are never updated."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    newsletter_id: Mapped[int | None] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE")
    )
    # signup, confirm, import, unsubscribe, resubscribe, admin
    action: Mapped[str] = mapped_column(String(32))
    # Which form or channel: "form:alliance-digest", "api", "csv-import", "token:NAME" …
    source: Mapped[str] = mapped_column(String(200), default="")
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Suppression(Base):
    """An address that must never be mailed, whatever its subscriptions say."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    reason: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)



IMPORT_STATUSES = ("queued", "running", "done", "failed")


class ImportJob(Base):
    """A CSV import from the newsroom, run by a worker: where it stands and what it found.

    The file itself is kept in `import_job_parts` until the import ends, so a worker on any
    machine can read it (the web app and the workers share the database, not a disk)."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # What imported readers become: active, or pending (each is sent a confirmation mail).
    subscription_status: Mapped[str] = mapped_column(String(16), default="active")
    filename: Mapped[str] = mapped_column(String(200), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    # The file's lines read by then: a resumed run numbers its error lines on from there.
    lines_done: Mapped[int] = mapped_column(default=0, server_default="0")
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    kept_unsubscribed: Mapped[int] = mapped_column(default=0)
    error_count: Mapped[int] = mapped_column(default=0)
    # [{"line", "detail"}], the first ones (as many as the import report keeps).
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONDict, default=list)
    # Why the whole file was refused (no email column, not CSV …).
    detail: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The run that holds the job: its fencing token, where it runs ("host:pid") and until when
    # (by the database's clock) it holds it unless it renews. For a queued job, `lease_until`
    # is when the sweep sends its task again if no worker has taken it by then.
    claim_token: Mapped[int | None] = mapped_column(BigInteger)
    claimed_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    lease_until: Mapped[datetime | None]
    # How many times a run took it up where an interrupted one had stopped.
    resumes: Mapped[int] = mapped_column(default=0, server_default="0")

    newsletter: Mapped[Newsletter] = relationship()


class ImportJobPart(Base):
    """One piece of an uploaded CSV, in order, until its import ends."""

    __tablename__ = "import_job_parts"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("import_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
