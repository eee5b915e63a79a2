from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field

from app.errors import Invalid
from app.issues.markdown import is_absolute_url
from app.validation import JsonInput, normalise_email

Cadence = Literal["biweekly", "weekly", "monthly", "none"]
# "off"; "notify": beat drafts from the feed before each slot and tells the editors;
# "schedule": it also schedules the draft for the slot when the pre-send checks pass.
FeedDrafts = Literal["off", "notify", "schedule"]
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f<>\"\\`{}|^]")


def _feed_url(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _URL_FORBIDDEN.search(value) or not is_absolute_url(value, ("http", "https")):
        raise ValueError("feed_url must be a full http:// or https:// address")
    return value


def _emails(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out: list[str] = []
    for value in values:
        try:
            address = normalise_email(value)
        except Invalid as exc:
            raise ValueError(str(exc.detail)) from exc
        if address not in out:
            out.append(address)
    return out


FeedUrl = Annotated[str | None, Field(max_length=2000), AfterValidator(_feed_url)]
EditorEmails = Annotated[list[str], Field(max_length=20), AfterValidator(_emails)]


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
    feed_url: FeedUrl = None
    feed_drafts: FeedDrafts = "off"
    feed_draft_hours_before: int = Field(default=48, ge=1, le=24 * 30)
    editor_emails: EditorEmails = []


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
    feed_url: FeedUrl = None
    feed_drafts: FeedDrafts | None = None
    feed_draft_hours_before: int | None = Field(default=None, ge=1, le=24 * 30)
    editor_emails: Annotated[list[str] | None, Field(max_length=20),
                             AfterValidator(_emails)] = None


class NewsletterOut(NewsletterBase):
    model_config = ConfigDict(from_attributes=True)
    slug: str
    created_at: datetime
