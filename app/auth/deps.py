"""Who is calling the editor API, and may they?"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.auth.models import ApiToken
from app.auth.service import authenticate, record_use
from app.db import session_scope
from app.errors import AppError
from app.newsroom.accounts import scope_ids
from app.newsroom.scope import check_api_request

_bearer = HTTPBearer(auto_error=False, description="An editor token from `missive token create`")

# Where the request gate (app/limits.py) leaves the token it checked before the body was read.
STATE_KEY = "api_token"


class Unauthorized(AppError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403


def token_from_header(authorization: str | None) -> ApiToken:
    """The live token an `Authorization: Bearer …` value names, or Unauthorized.

    Runs in its own short transaction, apart from the request's session: the request never
    holds a lock on its token's row (see `record_use`).
    """
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthorized("missing bearer token")
    with session_scope() as session:
        token = authenticate(session, credentials.strip())
        if token is None:
            raise Unauthorized("invalid or revoked token")
        record_use(session, token)
    return token


def current_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    token = request.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(token, ApiToken):
        if creds is None:
            raise Unauthorized("missing bearer token")
        token = token_from_header(f"{creds.scheme} {creds.credentials}")
    # A token of a user limited to some newsletters reaches nothing of the others.
    if token.user_id is not None:
        with session_scope() as session:
            scope = scope_ids(session, token.user_id)
            if scope is not None:
                check_api_request(session, request, scope)
    # Viewers may read; only editors and admins change anything.
    if token.role == "viewer" and request.method not in ("GET", "HEAD", "OPTIONS"):
        raise Forbidden("this token may only read")
    return token


TokenDep = Annotated[ApiToken, Depends(current_token)]


def token_scope(session: Session, token: ApiToken) -> frozenset[int] | None:
    """The newsletters a token may see (None: all of them), for lists that filter by it."""
    return scope_ids(session, token.user_id)


def admin_token(token: TokenDep) -> ApiToken:
    if token.role != "admin":
        raise Forbidden("only an admin token may do this")
    return token


AdminDep = Annotated[ApiToken, Depends(admin_token)]
