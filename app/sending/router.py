from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.auth.deps import TokenDep
from app.db import DbId, SessionDep
from app.sending import service

router = APIRouter(prefix="/api/v1", tags=["sending"])


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: AwareDatetime | None = Field(default=None, description="start at this time (with zone)")
    next_slot: bool = Field(default=False, description="start at the newsletter's next slot")
    test_to: list[str] | None = Field(
        default=None, max_length=service.MAX_TEST_RECIPIENTS,
        description="send only to these addresses, touching no ledger",
    )
    test_marker: bool = Field(
        default=True, description='test copies: put "[Test]" before the subject')


@router.post("/issues/{issue_id}/send", status_code=status.HTTP_202_ACCEPTED)
def send_issue(issue_id: DbId, session: SessionDep, token: TokenDep,
               body: SendRequest | None = None) -> dict[str, Any]:
    body = body or SendRequest()
    if body.test_to is not None:
        return service.test_send(session, issue_id, body.test_to, marker=body.test_marker)
    send = service.schedule(session, issue_id, at=body.at, next_cadence_slot=body.next_slot,
                            actor=f"api:{token.name}")
    return service.report(session, send)


@router.get("/sends/{send_id}")
def get_send(send_id: DbId, session: SessionDep, _: TokenDep) -> dict[str, Any]:
    return service.report(session, service.get(session, send_id))


@router.post("/sends/{send_id}/pause")
def pause_send(send_id: DbId, session: SessionDep, _: TokenDep) -> dict[str, Any]:
    return service.report(session, service.pause(session, send_id))


@router.post("/sends/{send_id}/resume")
def resume_send(send_id: DbId, session: SessionDep, _: TokenDep) -> dict[str, Any]:
    return service.report(session, service.resume(session, send_id))


@router.post("/sends/{send_id}/cancel")
def cancel_send(send_id: DbId, session: SessionDep, _: TokenDep) -> dict[str, Any]:
    return service.report(session, service.cancel(session, send_id))
