from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.validation import JsonInput

Status = Literal["pending", "active", "unsubscribed"]


class SubscriptionOut(BaseModel):
    newsletter: str
    status: Status
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str
    attributes: dict[str, Any]
    suppressed: str | None
    subscriptions: list[SubscriptionOut]
    created_at: datetime


class SubscriberPage(BaseModel):
    items: list[SubscriberOut]
    next_cursor: str | None


class SubscriptionIn(JsonInput):
    newsletter: str
    status: Status = "active"


class SubscriberCreate(JsonInput):
    email: str = Field(max_length=254)
    name: str = Field(default="", max_length=200)
    attributes: dict[str, Any] = Field(default_factory=dict)
    subscriptions: list[SubscriptionIn] = Field(default_factory=list, max_length=100)


class SubscriberUpdate(JsonInput):
    email: str | None = Field(default=None, max_length=254)
    name: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] | None = None
    subscriptions: list[SubscriptionIn] | None = Field(default=None, max_length=100)


class ImportRowError(BaseModel):
    line: int
    detail: str


class ImportResult(BaseModel):
    created: int
    updated: int
    errors: list[ImportRowError]
