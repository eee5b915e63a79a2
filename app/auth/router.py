"""Editor API tokens over the API: /api/v1/tokens (admin tokens only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from app.auth import service
from app.auth.deps import AdminDep
from app.auth.models import ApiToken
from app.db import DbId, SessionDep
from app.errors import Conflict
from app.validation import JsonInput

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


class TokenOut(BaseModel):
    id: int
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreate(JsonInput):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["admin", "editor", "viewer"] = "editor"


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown this once, never again")


def _out(t: ApiToken) -> TokenOut:
    return TokenOut(id=t.id, name=t.name, role=t.role, created_at=t.created_at,
                    last_used_at=t.last_used_at, revoked_at=t.revoked_at)


@router.get("", summary="List API tokens")
def list_tokens(
    session: SessionDep, _: AdminDep,
    include_revoked: Annotated[bool, Query(description="revoked tokens too")] = False,
) -> list[TokenOut]:
    """Every live token (never the token itself); `include_revoked` adds revoked ones."""
    return [_out(t) for t in service.list_tokens(session, include_revoked=include_revoked)]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an API token")
def create_token(body: TokenCreate, session: SessionDep, _: AdminDep) -> TokenCreated:
    """A new token, shown in the answer once."""
    token = service.create_token(session, name=body.name, role=body.role)
    row = service.authenticate(session, token)
    assert row is not None
    return TokenCreated(**_out(row).model_dump(), token=token)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Revoke an API token")
def revoke_token(token_id: DbId, session: SessionDep, caller: AdminDep) -> None:
    """Requests with this token are refused from now on. 404 if no such live token; 409 for
    the token making the request (an admin cannot lock themselves out by mistake)."""
    if token_id == caller.id:
        raise Conflict("this is the token you are using; revoke it with another admin token")
    service.revoke_token(session, token_id=token_id)
