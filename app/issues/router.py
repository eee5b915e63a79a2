"""Editor API for issues: /api/v1/issues."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.deps import Forbidden, TokenDep, Unauthorized, current_token
from app.db import DbId, SessionDep
from app.errors import AppError
from app.issues import service
from app.issues.schemas import (
    CheckReport,
    IssueDocument,
    IssueOut,
    IssuePage,
    IssuePatch,
    IssueStatus,
    NextNumber,
)

router = APIRouter(prefix="/api/v1/issues", tags=["issues"])

_bearer = HTTPBearer(auto_error=False)
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
# The preview is the sender's own HTML; still, nothing in it may run or load scripts.
_PREVIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src https: http: data:; "
    "style-src 'unsafe-inline'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its $defs written in place (OpenAPI cannot see the model's $defs
    when the body is read by hand)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return dict(resolve(schema))


def _body_doc(model: type[IssueDocument] | type[IssuePatch]) -> dict[str, Any]:
    schema = _inline_refs(model.model_json_schema())
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema},
        "application/yaml": {"schema": schema},
    }}}


async def _document_body(request: Request) -> bytes:
    """The issue document's bytes; every problem in it is reported together, so the body is
    read here rather than by FastAPI. Only the reading happens on the event loop."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > service.MAX_DOCUMENT_BYTES:
            raise AppError("the issue document is larger than 1 MB", 413)
    return bytes(body)


def _document(request: Request, body: Annotated[bytes, Depends(_document_body)]) -> Any:
    """The issue document in the body, JSON or YAML (by Content-Type), parsed in a thread."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype in _YAML_TYPES:
        return service.parse_document(body, kind="yaml")
    if ctype in ("application/json", ""):
        return service.parse_document(body or b"null", kind="json")
    raise AppError("send the issue as application/json or application/yaml", 415)


Document = Annotated[Any, Depends(_document)]


@router.get("")
def list_issues(
    session: SessionDep,
    _: TokenDep,
    newsletter: str | None = None,
    status: IssueStatus | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> IssuePage:
    """Issues, newest first; `next_cursor` fetches the next page."""
    return service.list_page(session, newsletter=newsletter, status=status, cursor=cursor,
                             limit=limit)


@router.post("", status_code=status.HTTP_201_CREATED, openapi_extra=_body_doc(IssueDocument))
def create_issue(document: Document, session: SessionDep, _: TokenDep) -> IssueOut:
    """Create a draft from an issue document (JSON or YAML). Leave `volume` and `number` out
    to take the next in the newsletter's series. 422 lists every problem; 409 when the number
    is taken."""
    return service.to_out(service.create(session, document))


@router.get("/next")
def next_number(newsletter: str, session: SessionDep, _: TokenDep) -> NextNumber:
    """The number the next issue of a newsletter gets: "Vol 2.23" after "Vol 2.22"."""
    return service.next_number(session, newsletter)


@router.get("/{issue_id:int}")
def get_issue(issue_id: DbId, session: SessionDep, _: TokenDep) -> IssueOut:
    return service.to_out(service.get(session, issue_id))


@router.patch("/{issue_id:int}", openapi_extra=_body_doc(IssuePatch))
def update_issue(issue_id: DbId, document: Document, session: SessionDep, _: TokenDep
                 ) -> IssueOut:
    """Change a draft: only the fields given change. 409 once it is scheduled or sent."""
    return service.to_out(service.update(session, issue_id, document))


@router.delete("/{issue_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_issue(issue_id: DbId, session: SessionDep, _: TokenDep) -> None:
    service.delete(session, issue_id)


@router.get("/{issue_id:int}/checks")
def check_issue(issue_id: DbId, session: SessionDep, _: TokenDep) -> CheckReport:
    """Pre-send checks: Gmail's 102 KB clipping, images without alt text, http:// links,
    empty stories, template variables left in the text."""
    return service.checks(service.get(session, issue_id))


def _preview_access(
    issue_id: DbId,
    session: SessionDep,
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    key: str | None = None,
    subscriber: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> None:
    # A browser cannot send a bearer token from the address bar: the issue's `preview_url`
    # carries a signed key for this one issue instead. The key shows the made-up sample reader
    # only: a reader's own copy holds their address and unsubscribe token, so it takes a token.
    if key is not None and subscriber is None:
        if service.check_preview_key(session, issue_id, key):
            return
        raise Unauthorized("this preview link is invalid, expired or revoked")
    if creds is None and subscriber is not None:
        raise Unauthorized("a reader's own copy needs an editor token; the preview link "
                           "shows the sample reader only")
    token = current_token(request, creds)
    if subscriber is not None and token.role == "viewer":
        raise Forbidden("a reader's own copy needs an editor token")


PreviewAccess = Annotated[None, Depends(_preview_access)]
SubscriberId = Annotated[int | None, Query(ge=1, le=2**31 - 1,
                                           description="preview as this subscriber")]


@router.get("/{issue_id:int}/preview", response_class=HTMLResponse)
def preview_html(issue_id: DbId, session: SessionDep, _: PreviewAccess,
                 subscriber: SubscriberId = None) -> Response:
    """The HTML part exactly as sent, for a sample reader or for `subscriber` (an id)."""
    message = service.preview_message(session, service.get(session, issue_id), subscriber)
    return HTMLResponse(service.message_part(message, "html"), headers=_PREVIEW_HEADERS)


@router.get("/{issue_id:int}/preview.txt", response_class=PlainTextResponse)
def preview_text(issue_id: DbId, session: SessionDep, _: PreviewAccess,
                 subscriber: SubscriberId = None) -> Response:
    """The text part exactly as sent."""
    message = service.preview_message(session, service.get(session, issue_id), subscriber)
    return PlainTextResponse(service.message_part(message, "plain"), headers=_PREVIEW_HEADERS)


@router.get("/{issue_id:int}/preview.eml")
def preview_message(issue_id: DbId, session: SessionDep, _: PreviewAccess,
                    subscriber: SubscriberId = None) -> Response:
    """The whole message, headers and both parts, as it would go to the mail server."""
    message = service.preview_message(session, service.get(session, issue_id), subscriber)
    return Response(message, media_type="message/rfc822", headers={
        **_PREVIEW_HEADERS, "Content-Disposition": f'attachment; filename="issue-{issue_id}.eml"',
    })


@router.post("/{issue_id:int}/preview/revoke")
def revoke_preview_links(issue_id: DbId, session: SessionDep, _: TokenDep) -> IssueOut:
    """Void every preview link given out for this issue; the answer carries a new one."""
    return service.to_out(service.revoke_preview_links(session, issue_id))
