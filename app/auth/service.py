"""Editor API tokens and users."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.auth.models import ROLES, ApiToken, User
from app.db import utcnow
from app.errors import Conflict, Invalid
from app.security import hash_api_token, new_api_token
from app.validation import normalise_email


def create_token(session: Session, *, name: str, role: str = "editor",
                 replace: bool = False, user: User | None = None) -> str:
    """Store a new token and return it; it is never retrievable again.

    With `replace`, earlier tokens of the same name are revoked (used by `make run`, which
    prints a fresh token each time it starts).
    """
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    name = name.strip()
    if not name or len(name) > 100:
        raise Invalid("token name must be 1 to 100 characters")
    if replace:
        session.execute(
            update(ApiToken)
            .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    token = new_api_token()
    session.add(ApiToken(name=name, token_hash=hash_api_token(token), role=role,
                         user_id=user.id if user else None))
    session.flush()
    return token


def authenticate(session: Session, token: str) -> ApiToken | None:
    """The live token matching `token`, or None."""
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == hash_api_token(token),
                               ApiToken.revoked_at.is_(None))
    ).first()
    if row is not None:
        row.last_used_at = utcnow()
    return row


def create_user(session: Session, *, email: str, role: str = "editor") -> tuple[User, str]:
    """A new user with a first API token of their own."""
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    email = normalise_email(email)
    # Addresses are one account whatever their case.
    if session.scalars(select(User).where(func.lower(User.email) == email.lower())).first():
        raise Conflict(f"a user {email} exists already")
    user = User(email=email, role=role)
    session.add(user)
    session.flush()
    return user, create_token(session, name=f"user:{email}", role=role, user=user)
