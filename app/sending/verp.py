"""Moved to `app.mail.verp` (every kind of mail has a VERP address now); kept for imports."""

from app.mail.verp import delivery_id, envelope_sender

__all__ = ["delivery_id", "envelope_sender"]
