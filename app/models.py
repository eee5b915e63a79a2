"""Every table, imported in one place so the metadata is whole (Alembic, tests)."""

from app.auth.models import ApiToken, User
from app.db import Base
from app.newsletters.models import Newsletter
from app.ratelimit import RateCounter
from app.subscribers.models import ConsentEvent, Subscriber, Subscription, Suppression

__all__ = [
    "ApiToken",
    "Base",
    "ConsentEvent",
    "Newsletter",
    "RateCounter",
    "Subscriber",
    "Subscription",
    "Suppression",
    "User",
]
