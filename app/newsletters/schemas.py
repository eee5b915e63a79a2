from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field

from app.validation import JsonInput

Cadence = Literal["biweekly", "weekly", "monthly", "none"]


class NewsletterBase(JsonInput):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    from_name: str = Field(min_length=1, max_length=200)
    from_email: str = Field(max_length=254)
    reply_to: str | None = Field(default=None, max_length=254)
    footer: str = Field(default="", max_length=10000)
    postal_address: str = Field(default="", max_length=1000)
    cadence: Cadence = "biweekly"
    cadence_anchor: AwareDatetime | None = None


class NewsletterCreate(NewsletterBase):
    slug: str = Field(min_length=1, max_length=64)


class NewsletterUpdate(JsonInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    from_name: str | None = Field(default=None, min_length=1, max_length=200)
    from_email: str | None = Field(default=None, max_length=254)
    reply_to: str | None = Field(default=None, max_length=254)
    footer: str | None = Field(default=None, max_length=10000)
    postal_address: str | None = Field(default=None, max_length=1000)
    cadence: Cadence | None = None
    cadence_anchor: AwareDatetime | None = None


class NewsletterOut(NewsletterBase):
    model_config = ConfigDict(from_attributes=True)
    slug: str
    created_at: datetime
