"""Ways bounces come in over HTTP: a raw report from the editor API, and provider webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from app.auth.deps import TokenDep
from app.bounces import service, webhooks
from app.bounces.events import BounceEvent
from app.bounces.reasons import Reason
from app.db import DbId, SessionDep
from app.errors import Invalid

router = APIRouter(tags=["bounces"])

async def _raw_body(request: Request) -> bytes:
    # Its size is bounded as it is read (app/limits.py); only the reading happens on the loop.
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]


@router.post("/api/v1/bounces", summary="Ingest one raw bounce (DSN) or complaint (ARF)")
def post_bounce(_: TokenDep, raw: RawBody, session: SessionDep) -> dict[str, Any]:
    if not raw.strip():
        raise Invalid("the body is empty: send one raw RFC 5322 message")
    return service.ingest_message(session, raw)


class BounceOut(BaseModel):
    id: int
    occurred_at: datetime
    received_at: datetime
    kind: str
    # Why, in the vocabulary of app.bounces.reasons; `diagnostic` holds the server's words.
    reason: str
    email: str | None
    status_code: str | None
    diagnostic: str
    source: str
    send_id: int | None
    delivery_id: int | None
    action: str


@router.get("/api/v1/bounces")
def list_bounces(
    session: SessionDep,
    _: TokenDep,
    kind: Literal["hard", "soft", "policy", "complaint"] | None = None,
    reason: Reason | None = None,
    send_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    rows, next_cursor = service.list_page(session, kind=kind, send_id=send_id, email=email,
                                          before_id=cursor, limit=limit, reason=reason)
    return {
        "items": [BounceOut(id=r.id, occurred_at=r.occurred_at, received_at=r.received_at,
                            kind=r.kind, reason=r.reason, email=r.email_key,
                            status_code=r.status_code,
                            diagnostic=r.diagnostic, source=r.source, send_id=r.send_id,
                            delivery_id=r.delivery_id, action=r.action) for r in rows],
        "next_cursor": next_cursor,
    }


@router.post("/api/v1/sends/{send_id}/acknowledge-complaints")
def acknowledge(send_id: DbId, session: SessionDep, _: TokenDep) -> dict[str, Any]:
    newsletter = service.acknowledge_complaints(session, send_id)
    return {"newsletter": newsletter.slug, "sending_blocked": False}


def _webhook(session: Any, events: list[BounceEvent]) -> dict[str, Any]:
    return service.ingest(session, events, trusted=True).as_dict()


@router.post("/webhooks/ses", include_in_schema=True)
def ses(body: RawBody, session: SessionDep) -> dict[str, Any]:
    return _webhook(session, webhooks.ses_events(body))


@router.post("/webhooks/sendgrid")
def sendgrid(request: Request, body: RawBody, session: SessionDep) -> dict[str, Any]:
    return _webhook(session, webhooks.sendgrid_events(body, request.headers))


@router.post("/webhooks/postmark")
def postmark(request: Request, body: RawBody, session: SessionDep) -> dict[str, Any]:
    return _webhook(session, webhooks.postmark_events(body, request.headers))


@router.post("/webhooks/mailgun")
def mailgun(request: Request, body: RawBody, session: SessionDep) -> dict[str, Any]:
    return _webhook(session, webhooks.mailgun_events(body, request.headers))
