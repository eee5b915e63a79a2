"""The API's erasure of a subscriber (`DELETE /api/v1/subscribers/{id}`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from app.auth.deps import TokenDep
from app.db import DbId, SessionDep
from app.privacy import erasure
from app.subscribers.router import api_actor

router = APIRouter(prefix="/api/v1/subscribers", tags=["subscribers"])


@router.delete("/{subscriber_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def erase_subscriber(
    subscriber_id: DbId, request: Request, session: SessionDep, token: TokenDep
) -> None:
    """Erase the subscriber: personal data removed, the address kept only as a hash on the
    suppression list so it is not stored again; counts of sent issues unchanged."""
    erasure.erase(session, subscriber_id, api_actor(request, token.name))
