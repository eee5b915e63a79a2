"""Web sign-in: passwords, one-time sign-in links, server-side sessions and newsletter scopes.

Passwords are hashed with argon2id (argon2-cffi's defaults, rehashed when they change). A
session is a row keyed by the SHA-256 of a random token the browser holds in a signed cookie;
deleting the row ends it, which is how sign-out and a password change take effect at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.auth.models import ROLES, ApiToken, User
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.newsletters.models import Newsletter
from app.newsroom.models import UserNewsletter, UserSession
from app.security import hash_api_token
from app.validation import normalise_email

SESSION_DAYS = 7
SIGN_IN_LINK_HOURS = 24
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
# Writing last_seen_at on every page view would make every GET a write; once a minute is enough.
SEEN_EVERY = timedelta(minutes=1)


@lru_cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


# A hash of a random password, verified against when the address is unknown, so a wrong
# address costs as much time as a wrong password and does not reveal who has an account.
@lru_cache
def _decoy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def check_password_rules(password: str) -> None:
    """Invalid unless `password` is long enough (and not absurdly long)."""
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"The password needs at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"The password may have at most {MAX_PASSWORD} characters.")


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher().hash(password)


def find_user(session: Session, email: str) -> User | None:
    """The user with this address, whatever its case."""
    return session.scalars(
        select(User).where(func.lower(User.email) == email.strip().lower())
    ).first()


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.email)).all()


def create_user(session: Session, *, email: str, role: str = "editor",
                password: str | None = None, newsletter_ids: Sequence[int] = ()) -> User:
    """A new user who signs in to the web app; Conflict when the address has an account."""
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    email = normalise_email(email)
    if find_user(session, email) is not None:
        raise Conflict(f"a user {email} exists already")
    user = User(email=email, role=role,
                password_hash=hash_password(password) if password is not None else None)
    session.add(user)
    session.flush()
    set_scope(session, user, newsletter_ids)
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user whose address and password these are, or None (in about the same time)."""
    user = find_user(session, email) if "@" in email else None
    stored = user.password_hash if user is not None else None
    try:
        _hasher().verify(stored or _decoy_hash(), password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return None
    if user is None or stored is None:
        return None
    if _hasher().check_needs_rehash(stored):
        user.password_hash = _hasher().hash(password)
    return user


def change_password(session: Session, user: User, *, current: str, new: str,
                    keep_session_id: int | None) -> None:
    """Set a new password and end every other session of the user. A user who has none yet
    (signed in with a one-time link) need not give a current one."""
    if user.password_hash is not None:
        try:
            _hasher().verify(user.password_hash, current[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError) as exc:
            raise Invalid("The current password is not right.") from exc
    user.password_hash = hash_password(new)
    end_sessions(session, user.id, except_id=keep_session_id)


# --- one-time sign-in links -------------------------------------------------------------------


def issue_sign_in_token(session: Session, user: User, *, hours: int = SIGN_IN_LINK_HOURS) -> str:
    """A token for one sign-in without a password (shown once; an earlier one stops working)."""
    token = secrets.token_urlsafe(32)
    user.sign_in_token_hash = hash_api_token(token)
    user.sign_in_expires_at = utcnow() + timedelta(hours=hours)
    session.flush()
    return token


def redeem_sign_in_token(session: Session, token: str) -> User | None:
    """The user this link signs in, used up; None when it is unknown, used or expired."""
    if not token or len(token) > 128:
        return None
    user = session.scalars(
        select(User).where(User.sign_in_token_hash == hash_api_token(token))
    ).first()
    if user is None or user.sign_in_expires_at is None or user.sign_in_expires_at < utcnow():
        return None
    user.sign_in_token_hash = None
    user.sign_in_expires_at = None
    return user


# --- sessions ---------------------------------------------------------------------------------


def start_session(session: Session, user: User, *, user_agent: str) -> tuple[UserSession, str]:
    """A new session row and the token for the browser's cookie."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = UserSession(user_id=user.id, token_hash=hash_api_token(token),
                      csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen_at=now,
                      expires_at=now + timedelta(days=SESSION_DAYS),
                      user_agent=user_agent[:300])
    session.add(row)
    user.last_sign_in_at = now
    session.flush()
    return row, token


def resume_session(session: Session, token: str) -> tuple[UserSession, User] | None:
    """The live session for a cookie's token and its user, or None."""
    row = session.scalars(
        select(UserSession).where(UserSession.token_hash == hash_api_token(token))
    ).first()
    now = utcnow()
    if row is None or row.expires_at < now:
        return None
    user = session.get(User, row.user_id)
    if user is None:
        return None
    if now - row.last_seen_at > SEEN_EVERY:
        row.last_seen_at = now
    return row, user


def end_session(session: Session, session_id: int) -> None:
    session.execute(delete(UserSession).where(UserSession.id == session_id))


def end_sessions(session: Session, user_id: int, *, except_id: int | None = None) -> int:
    """End a user's sessions (all but `except_id`); returns how many ended."""
    stmt = delete(UserSession).where(UserSession.user_id == user_id)
    if except_id is not None:
        stmt = stmt.where(UserSession.id != except_id)
    return int(getattr(session.execute(stmt), "rowcount", 0) or 0)


def purge_expired_sessions(session: Session) -> int:
    result = session.execute(delete(UserSession).where(UserSession.expires_at < utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


# --- which newsletters a user may see ---------------------------------------------------------


def scope_ids(session: Session, user_id: int | None) -> frozenset[int] | None:
    """The newsletter ids a user is limited to, or None when they see every newsletter."""
    if user_id is None:
        return None
    ids = frozenset(session.scalars(
        select(UserNewsletter.newsletter_id).where(UserNewsletter.user_id == user_id)))
    return ids or None


def set_scope(session: Session, user: User, newsletter_ids: Sequence[int]) -> None:
    """Limit a user to these newsletters (none given: every newsletter)."""
    session.execute(delete(UserNewsletter).where(UserNewsletter.user_id == user.id))
    for newsletter_id in sorted(set(newsletter_ids)):
        if session.get(Newsletter, newsletter_id) is None:
            raise Invalid(f"no newsletter {newsletter_id}")
        session.add(UserNewsletter(user_id=user.id, newsletter_id=newsletter_id))
    session.flush()


def delete_user(session: Session, user_id: int) -> None:
    """Remove an account: its sessions, scope and API tokens go with it."""
    user = get_user(session, user_id)
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    session.delete(user)
    session.flush()


def set_role(session: Session, user: User, role: str) -> None:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    user.role = role
    session.flush()


# --- API tokens -------------------------------------------------------------------------------


def list_tokens(session: Session) -> Sequence[ApiToken]:
    """Every API token, live ones first, newest first."""
    return session.scalars(select(ApiToken).order_by(
        ApiToken.revoked_at.is_not(None), ApiToken.id.desc())).all()


def revoke_token(session: Session, token_id: int) -> ApiToken:
    """Revoke a token (idempotent): it stops working at once."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token
