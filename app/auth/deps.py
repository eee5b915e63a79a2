"""Who is calling the editor API, and may they?"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.models import ApiToken
from app.auth.service import authenticate
from app.db import SessionDep
from app.errors import AppError
from app.newsroom.accounts import scope_ids
from app.newsroom.scope import check_api_request

_bearer = HTTPBearer(auto_error=False, description="An editor token from `missive token create`")


class Unauthorized(AppError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403


def current_token(
    session: SessionDep,
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    token = authenticate(session, creds.credentials)
    if token is None:
        raise Unauthorized("invalid or revoked token")
    # A token of a user limited to some newsletters reaches nothing of the others.
    scope = scope_ids(session, token.user_id)
    if scope is not None:
        check_api_request(session, request, scope)
    # Viewers may read; only editors and admins change anything.
    if token.role == "viewer" and request.method not in ("GET", "HEAD", "OPTIONS"):
        raise Forbidden("this token may only read")
    return token


TokenDep = Annotated[ApiToken, Depends(current_token)]
