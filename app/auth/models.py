from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

ROLES = ("admin", "editor", "viewer")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="editor")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Web sign-in (app/newsroom): an argon2 hash, or None until a password is set.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # A one-time sign-in link: the SHA-256 of its token and when it stops working.
    sign_in_token_hash: Mapped[str | None] = mapped_column(String(64))
    sign_in_expires_at: Mapped[datetime | None]
    last_sign_in_at: Mapped[datetime | None]


class ApiToken(Base):
    """An editor API token. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="editor")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
