from __future__ import annotations

import tempfile
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from app.auth.deps import TokenDep
from app.config import get_settings
from app.db import DbId, SessionDep, session_scope
from app.errors import AppError
from app.newsletters import service as newsletters
from app.subscribers import csvio, service
from app.subscribers.schemas import (
    SubscriberCreate,
    SubscriberOut,
    SubscriberPage,
    SubscriberUpdate,
)
from app.subscribers.service import Actor

router = APIRouter(prefix="/api/v1/subscribers", tags=["subscribers"])


class PayloadTooLarge(AppError):
    status_code = 413


def _actor(request: Request, token_name: str) -> Actor:
    return Actor(
        source=f"api:{token_name}",
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent", "")[:500],
    )


@router.get("")
def list_subscribers(
    session: SessionDep,
    _: TokenDep,
    newsletter: str | None = None,
    status: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
) -> SubscriberPage:
    return service.list_page(
        session, newsletter=newsletter, status=status, q=q, cursor=cursor, limit=limit
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create_subscriber(
    body: SubscriberCreate, request: Request, session: SessionDep, token: TokenDep
) -> SubscriberOut:
    subscriber = service.create(session, body, _actor(request, token.name))
    return service.to_out(session, subscriber)


@router.post("/import")
async def import_subscribers(
    request: Request,
    session: SessionDep,
    token: TokenDep,
    newsletter: str,
    status: Literal["active", "pending"] = "active",
) -> dict[str, Any]:
    """CSV body, header `email,name,…`: further columns become attributes."""
    target = newsletters.get_by_slug(session, newsletter)
    limit = get_settings().max_request_bytes
    # Spool the body to disk as it arrives, then import it in batches from there.
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the CSV is larger than {limit} bytes")
            spool.write(chunk)
        spool.seek(0)
        report = await run_in_threadpool(
            csvio.import_csv,
            session,
            spool,
            newsletter=target,
            status=status,
            source=f"csv-import:{token.name}",
            checkpoint=session.commit,
        )
    return report.as_dict()


@router.get("/export")
def export_subscribers(
    session: SessionDep, _: TokenDep, newsletter: str | None = None
) -> StreamingResponse:
    # Fail before streaming starts if the newsletter does not exist.
    target_slug = newsletters.get_by_slug(session, newsletter).slug if newsletter else None

    def rows() -> Any:
        with session_scope() as export_session:
            target = newsletters.get_by_slug(export_session, target_slug) if target_slug else None
            yield from csvio.export_rows(export_session, newsletter=target)

    filename = f"subscribers-{target_slug or 'all'}.csv"
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/{subscriber_id}")
def get_subscriber(subscriber_id: DbId, session: SessionDep, _: TokenDep) -> SubscriberOut:
    return service.to_out(session, service.get(session, subscriber_id))


@router.patch("/{subscriber_id}")
def update_subscriber(
    subscriber_id: DbId,
    body: SubscriberUpdate,
    request: Request,
    session: SessionDep,
    token: TokenDep,
) -> SubscriberOut:
    subscriber = service.update(session, subscriber_id, body, _actor(request, token.name))
    return service.to_out(session, subscriber)


@router.delete("/{subscriber_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_subscriber(subscriber_id: DbId, session: SessionDep, _: TokenDep) -> None:
    service.delete_subscriber(session, subscriber_id)
