"""Editor API tokens and users."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app.auth.models import ROLES, ApiToken, User
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.security import hash_api_token, new_api_token
from app.validation import clean_text, normalise_email


def create_token(session: Session, *, name: str, role: str = "editor",
                 replace: bool = False, user: User | None = None) -> str:
    """Store a new token and return it; it is never retrievable again.

    With `replace`, earlier tokens of the same name are revoked (used by `make run`, which
    prints a fresh token each time it starts).
    """
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    name = clean_text(name, field="token name", max_length=100)
    if not name:
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


# A token's last use is recorded at most this often, in its own short transaction: a request
# must never hold a lock on its token's row while it runs (two requests on one token would queue).
LAST_USED_EVERY = timedelta(seconds=60)


def authenticate(session: Session, token: str) -> ApiToken | None:
    """The live token matching `token`, or None. Reads only: see `record_use`."""
    return session.scalars(
        select(ApiToken).where(ApiToken.token_hash == hash_api_token(token),
                               ApiToken.revoked_at.is_(None))
    ).first()


def record_use(session: Session, token: ApiToken) -> None:
    """Stamp `token` as used now, unless that was done within the last minute.

    The caller commits at once, so the row lock lasts one statement.
    """
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id,
               or_(ApiToken.last_used_at.is_(None),
                   ApiToken.last_used_at < now - LAST_USED_EVERY))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def list_tokens(session: Session, *, include_revoked: bool = False) -> list[ApiToken]:
    """API tokens, oldest first; live ones only unless `include_revoked`."""
    query = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_token(session: Session, *, name: str | None = None, token_id: int | None = None
                 ) -> int:
    """Revoke the live tokens called `name` (or the one with `token_id`); how many there were.

    NotFound when there is no such live token.
    """
    query = update(ApiToken).where(ApiToken.revoked_at.is_(None))
    if token_id is not None:
        query = query.where(ApiToken.id == token_id)
    else:
        query = query.where(ApiToken.name == (name or "").strip())
    result = session.execute(query.values(revoked_at=utcnow()))
    count = getattr(result, "rowcount", 0)
    if not count:
        what = f"id {token_id}" if token_id is not None else f"named {name!r}"
        raise NotFound(f"no live token {what}")
    return int(count)


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
