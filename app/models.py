"""Every table, imported in one place so the metadata is whole (Alembic, tests)."""

from app.auth.models import ApiToken, User
from app.bounces.models import BounceRecord
from app.db import Base
from app.editions.models import EditionAlert, FeedItemUse
from app.issues.models import Issue
from app.mail.models import OutboundMessage
from app.newsletters.models import Newsletter
from app.newsroom.models import UserNewsletter, UserSession
from app.ops.models import MetricCounter, StatusTally
from app.ratelimit import RateCounter
from app.sending.models import Delivery, Send
from app.subscribers.models import (
    ConsentEvent,
    ImportJob,
    ImportJobPart,
    Subscriber,
    Subscription,
    Suppression,
)

__all__ = [
    "ApiToken",
    "Base",
    "BounceRecord",
    "ConsentEvent",
    "Delivery",
    "EditionAlert",
    "FeedItemUse",
    "ImportJob",
    "ImportJobPart",
    "Issue",
    "MetricCounter",
    "Newsletter",
    "OutboundMessage",
    "RateCounter",
    "Send",
    "StatusTally",
    "Subscriber",
    "Subscription",
    "Suppression",
    "User",
    "UserNewsletter",
    "UserSession",
]
