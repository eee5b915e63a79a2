from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

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


class UnknownSelection(BaseModel):
    """Which `unknown` rows: listed delivery ids, or all of the send's."""

    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        default=None, min_length=1, max_length=10000, description="delivery ids")
    all: bool = Field(default=False, description="every unknown row of the send")

    @model_validator(mode="after")
    def _one_of(self) -> UnknownSelection:
        if (self.ids is None) == (not self.all):
            raise ValueError('give either "ids" or "all": true')
        return self


@router.get("/sends/{send_id}/unknown")
def list_unknown(send_id: DbId, session: SessionDep, _: TokenDep,
                 cursor: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1, le=service.MAX_UNKNOWN_PAGE)] = 100,
                 ) -> dict[str, Any]:
    return service.unknown_deliveries(session, send_id, cursor=cursor, limit=limit)


@router.post("/sends/{send_id}/unknown/mark-delivered")
def mark_unknown_delivered(send_id: DbId, body: UnknownSelection, session: SessionDep,
                           token: TokenDep) -> dict[str, Any]:
    return service.mark_unknown_delivered(session, send_id, body.ids, actor=f"api:{token.name}")


@router.post("/sends/{send_id}/unknown/resend")
def resend_unknown(send_id: DbId, body: UnknownSelection, session: SessionDep,
                   token: TokenDep) -> dict[str, Any]:
    return service.resend_unknown(session, send_id, body.ids, actor=f"api:{token.name}")
