from __future__ import annotations

import io
import logging
from typing import IO, Annotated, Any, Literal

import anyio.from_thread
from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from app.auth.deps import TokenDep
from app.db import DbId, SessionDep, session_scope
from app.newsletters import service as newsletters
from app.subscribers import csvio, service
from app.subscribers.schemas import (
    SubscriberCreate,
    SubscriberOut,
    SubscriberPage,
    SubscriberUpdate,
)
from app.subscribers.service import Actor

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/subscribers", tags=["subscribers"])


def api_actor(request: Request, token_name: str) -> Actor:
    """Who did it, for the consent log: the token's name and the client."""
    return Actor(
        source=f"api:{token_name}",
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent", "")[:500],
    )


# A subscription's status, or how an address came to be suppressed.
ListStatus = Literal["pending", "active", "unsubscribed", "bounced", "complained", "manual"]


@router.get("")
def list_subscribers(
    session: SessionDep,
    _: TokenDep,
    newsletter: str | None = None,
    status: ListStatus | None = None,
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
    subscriber = service.create(session, body, api_actor(request, token.name))
    return service.to_out(session, subscriber)


@router.post("/import")
async def import_subscribers(
    request: Request,
    token: TokenDep,
    newsletter: str,
    status: Literal["active", "pending"] = "active",
) -> dict[str, Any]:
    """CSV body, header `email,name,…`: further columns become attributes."""
    # The import runs in a worker thread that pulls the body from the event loop chunk by chunk
    # as it needs it: nothing blocks the loop, the CSV is never held whole, and a client that
    # goes away stops the import (ClientDisconnect) with the batches already committed kept.
    body = io.BufferedReader(RequestBody(request), buffer_size=64 * 1024)
    try:
        report = await run_in_threadpool(
            _import, body, newsletter=newsletter, status=status,
            source=f"csv-import:{token.name}")
    except ClientDisconnect:
        log.info("CSV import by %s stopped: the client went away", token.name)
        return {"detail": "the client went away"}
    return report.as_dict()


def _import(body: IO[bytes], *, newsletter: str, status: str, source: str) -> csvio.ImportReport:
    with session_scope() as session:
        target = newsletters.get_by_slug(session, newsletter)
        return csvio.import_csv(session, body, newsletter=target, status=status, source=source,
                                checkpoint=session.commit)


class RequestBody(io.RawIOBase):
    """The request body as a blocking file, for a worker thread started by anyio.

    Each read waits on the event loop for the next chunk (`anyio.from_thread.run`), so the
    thread blocks and the loop does not.
    """

    def __init__(self, request: Request) -> None:
        self._chunks = request.stream()
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            try:
                self._pending = anyio.from_thread.run(self._chunks.__anext__)
            except StopAsyncIteration:
                self._done = True
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


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


@router.get("/{subscriber_id:int}")
def get_subscriber(subscriber_id: DbId, session: SessionDep, _: TokenDep) -> SubscriberOut:
    return service.to_out(session, service.get(session, subscriber_id))


@router.patch("/{subscriber_id:int}")
def update_subscriber(
    subscriber_id: DbId,
    body: SubscriberUpdate,
    request: Request,
    session: SessionDep,
    token: TokenDep,
) -> SubscriberOut:
    subscriber = service.update(session, subscriber_id, body, api_actor(request, token.name))
    return service.to_out(session, subscriber)
