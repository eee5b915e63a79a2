"""Issues in the newsroom: list, compose, preview, checks, test send, schedule, import/export.

Every rule lives in `app.issues.service` and `app.sending.service`; these routes turn forms into
their calls and their answers (and refusals) into pages.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as FormFile

from app.db import DbId, SessionDep
from app.errors import AppError, Invalid, NotFound
from app.issues import service as issues
from app.issues.models import ISSUE_STATUSES, Issue
from app.issues.router import _PREVIEW_HEADERS
from app.newsletters.models import Newsletter
from app.newsroom import forms, media, queries
from app.newsroom.deps import EditorDep, Viewer, ViewerDep, csrf_guard
from app.newsroom.web import render, see_other
from app.sending import service as sending

router = APIRouter(prefix="/admin/issues", include_in_schema=False,
                   dependencies=[Depends(csrf_guard)])

PAGE = 50
NOTICES = {
    "saved": "Draft saved.",
    "created": "Draft created.",
    "imported": "Issue imported as a draft.",
    "test": "Test copies are on their way.",
    "deleted": "Draft deleted.",
    "feed": "Draft made from the feed: read each story before sending.",
    "feed-more": "Draft made from the feed: read each story before sending. Some new items "
                 "did not fit (an issue holds a limited number of stories); the next draft "
                 "from the feed can take them.",
}


async def posted_form(request: Request) -> FormData:
    """The posted form (already read and bounded by the CSRF guard)."""
    return await request.form()


PostedForm = Annotated[FormData, Depends(posted_form)]


def _issue(session: SessionDep, viewer: Viewer, issue_id: int) -> Issue:
    issue = issues.get(session, issue_id)
    viewer.require_newsletter(issue.newsletter_id)
    return issue



# --- the list ---------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def list_issues(
    request: Request, viewer: ViewerDep, session: SessionDep,
    status: Annotated[Literal["", "draft", "scheduled", "sending", "sent"], Query()] = "",
    newsletter: Annotated[str, Query(max_length=64)] = "",
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    notice: str | None = None,
) -> HTMLResponse:
    return issues_page(request, session, viewer, newsletter=newsletter, status=status,
                       before=before, notice_text=NOTICES.get(notice or ""))


def issues_page(request: Request, session: SessionDep, viewer: Viewer, *, newsletter: str = "",
                status: str = "", before: int | None = None, notice_text: str | None = None,
                extra: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """The issues list (also shown again with the answer of a draft from the feed)."""
    chosen = viewer.newsletter(session, newsletter) if newsletter else None
    rows, more = queries.issue_page(session, viewer.scope,
                                    newsletter_id=chosen.id if chosen else None,
                                    status=status or None, before_id=before, limit=PAGE)
    visible = queries.newsletters(session, viewer.scope)
    return render(request, "issues.html", {
        "title": "Issues", "issues": rows, "next_before": more, "status": status,
        "statuses": ISSUE_STATUSES, "newsletter": newsletter, "newsletters": visible,
        "feeds": [n for n in visible if n.feed_url and (chosen is None or n.id == chosen.id)],
        "sends": queries.sends_of_issues(session, rows),
        "notice_text": notice_text, **(extra or {}),
    }, status_code=status_code)


# --- composing --------------------------------------------------------------------------------


def _compose_page(request: Request, session: SessionDep, viewer: Viewer, form: forms.ComposeForm,
                  issue: Issue | None, *, status_code: int = 200, notice: str | None = None,
                  unsaved: bool = False) -> HTMLResponse:
    context: dict[str, Any] = {
        "form": form, "issue": issue, "unsaved": unsaved,
        "newsletters": queries.newsletters(session, viewer.scope),
        "notice_text": NOTICES.get(notice or ""),
        "title": f"{issue.newsletter.name} {issue.label}" if issue else "New issue",
    }
    if issue is not None:
        context["out"] = issues.to_out(issue)
        context["checks"] = issues.checks(issue)
        context["send"] = send = queries.send_of_issue(session, issue.id)
        # Counted only where the page shows it: a draft not yet sent.
        if issue.status == "draft" and send is None:
            context["readers"] = queries.audience_count(session, issue.newsletter_id)
        context["next_slot"] = _next_slot(issue.newsletter)
        context["pdf_url"] = issues.pdf_url(issue) if issue.status == "sent" else None
    return render(request, "compose.html", context, status_code=status_code)


def _next_slot(newsletter: Newsletter) -> Any:
    try:
        return sending.next_slot(newsletter)
    except AppError:
        return None


@router.get("/new", response_class=HTMLResponse)
def new_issue(request: Request, viewer: EditorDep, session: SessionDep,
              newsletter: Annotated[str, Query(max_length=64)] = "") -> HTMLResponse:
    form = forms.ComposeForm(newsletter=newsletter, stories=[
        {"headline": "", "body": "", "link": ""}])
    visible = queries.newsletters(session, viewer.scope)
    if not newsletter and len(visible) == 1:
        form.newsletter = visible[0].slug
    if form.newsletter:
        volume, number = issues.propose_next(session, viewer.newsletter(session, form.newsletter))
        form.volume, form.number = str(volume), str(number)
    return _compose_page(request, session, viewer, form, None)


def _take_upload(form: forms.ComposeForm, posted: FormData) -> bool:
    """Store an uploaded hero image and point the form at it; False (with the problem beside
    the field) when the file is refused."""
    upload = posted.get("hero_file")
    if not isinstance(upload, FormFile) or not upload.filename:
        return True
    try:
        name = media.store_image(upload.file.read(media.MAX_IMAGE_BYTES + 1))
    except AppError as exc:
        form.errors["hero_file"] = str(exc.detail)
        return False
    form.hero_url = f"/media/{name}"  # a path: the host is added when rendered
    return True


def _problems(exc: AppError) -> list[dict[str, Any]]:
    if isinstance(exc, issues.IssueInvalid):
        return exc.problems
    return [{"field": "", "msg": str(exc.detail)}]


@router.post("/new", response_class=HTMLResponse)
def create_issue(request: Request, viewer: EditorDep, session: SessionDep,
                 posted: PostedForm) -> Response:
    form = forms.from_form(posted)
    if not _take_upload(form, posted):
        return _compose_page(request, session, viewer, form, None, status_code=422)
    action = str(posted.get("action") or "save")
    if form.apply(action):
        return _compose_page(request, session, viewer, form, None, unsaved=True)
    try:
        viewer.newsletter(session, form.newsletter)
    except NotFound:
        form.errors["newsletter"] = "Please choose a newsletter."
        return _compose_page(request, session, viewer, form, None, status_code=422)
    try:
        issue = issues.create(session, form.document(with_newsletter=True))
    except AppError as exc:
        form.show_problems(_problems(exc))
        return _compose_page(request, session, viewer, form, None, status_code=exc.status_code)
    return see_other(f"/admin/issues/{issue.id}?notice=created")


@router.post("/import", response_class=HTMLResponse)
def import_issue(request: Request, viewer: EditorDep, session: SessionDep,
                 file: Annotated[UploadFile, File()]) -> Response:
    raw = file.file.read(issues.MAX_DOCUMENT_BYTES + 1)
    try:
        data = issues.parse_document(raw, kind=issues.document_kind(file.filename or ""))
        slug = data.get("newsletter") if isinstance(data, dict) else None
        if isinstance(slug, str):
            viewer.newsletter(session, slug.strip())
        issue = issues.create(session, data)
    except AppError as exc:
        problems = [f"{p['field']}: {p['msg']}" if p.get("field") else str(p["msg"])
                    for p in _problems(exc)]
        if isinstance(exc, NotFound):
            problems = ["This file is for a newsletter you cannot write to (or that does not "
                        "exist)."]
        rows, more = queries.issue_page(session, viewer.scope, newsletter_id=None, status=None,
                                        before_id=None, limit=PAGE)
        return render(request, "issues.html", {
            "title": "Issues", "issues": rows, "next_before": more, "status": "",
            "statuses": ISSUE_STATUSES, "newsletter": "",
            "newsletters": queries.newsletters(session, viewer.scope), "feeds": [],
            "sends": queries.sends_of_issues(session, rows),
            "import_problems": problems,
        }, status_code=422 if exc.status_code < 500 else 400)
    return see_other(f"/admin/issues/{issue.id}?notice=imported")


@router.get("/{issue_id}", response_class=HTMLResponse)
def show_issue(request: Request, issue_id: DbId, viewer: ViewerDep, session: SessionDep,
               notice: str | None = None) -> HTMLResponse:
    issue = _issue(session, viewer, issue_id)
    out = issues.to_out(issue)
    form = forms.from_issue(out.model_dump(mode="json"), subject_is_default=out.subject_is_default)
    return _compose_page(request, session, viewer, form, issue, notice=notice)


@router.post("/{issue_id}", response_class=HTMLResponse)
def save_issue(request: Request, issue_id: DbId, viewer: EditorDep, session: SessionDep,
               posted: PostedForm) -> Response:
    issue = _issue(session, viewer, issue_id)
    form = forms.from_form(posted)
    form.newsletter = issue.newsletter.slug
    if not _take_upload(form, posted):
        return _compose_page(request, session, viewer, form, issue, status_code=422)
    if form.apply(str(posted.get("action") or "save")):
        return _compose_page(request, session, viewer, form, issue, unsaved=True)
    document = form.document(with_newsletter=False)
    try:
        # Savepoint: a refused save leaves the stored draft as it was.
        with session.begin_nested():
            issues.update(session, issue.id, document)
    except AppError as exc:
        session.refresh(issue)
        form.show_problems(_problems(exc))
        return _compose_page(request, session, viewer, form, issue, status_code=exc.status_code)
    return see_other(f"/admin/issues/{issue.id}?notice=saved")


@router.post("/{issue_id}/delete")
def delete_issue(issue_id: DbId, viewer: EditorDep, session: SessionDep) -> Response:
    issues.delete(session, _issue(session, viewer, issue_id).id)
    return see_other("/admin/issues?notice=deleted")


# --- preview, download, import ----------------------------------------------------------------


@router.get("/{issue_id}/preview", response_class=HTMLResponse)
def preview(issue_id: DbId, viewer: ViewerDep, session: SessionDep) -> HTMLResponse:
    """The HTML part exactly as the sample reader is sent it (the API preview's bytes)."""
    issue = _issue(session, viewer, issue_id)
    message = issues.preview_message(session, issue)
    return HTMLResponse(issues.message_part(message, "html"), headers=_PREVIEW_HEADERS)


@router.get("/{issue_id}/preview.txt", response_class=PlainTextResponse)
def preview_text(issue_id: DbId, viewer: ViewerDep, session: SessionDep) -> PlainTextResponse:
    issue = _issue(session, viewer, issue_id)
    message = issues.preview_message(session, issue)
    return PlainTextResponse(issues.message_part(message, "plain"), headers=_PREVIEW_HEADERS)


def document_of(issue: Issue) -> dict[str, Any]:
    """The issue as the document it could be loaded from again."""
    out = issues.to_out(issue).model_dump(mode="json")
    doc = {k: out[k] for k in ("newsletter", "volume", "number", "subject", "preheader",
                               "hero_image", "stories", "links", "footer")}
    if out["subject_is_default"]:
        doc["subject"] = None
    return {k: v for k, v in doc.items() if v is not None}


@router.get("/{issue_id}/download.{kind}")
def download(issue_id: DbId, kind: Literal["yaml", "json"], viewer: ViewerDep,
             session: SessionDep) -> Response:
    issue = _issue(session, viewer, issue_id)
    doc = document_of(issue)
    name = f"{issue.newsletter.slug}-{issue.volume}.{issue.number}.{kind}"
    if kind == "json":
        body = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        media = "application/json"
    else:
        body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
        media = "application/yaml"
    return Response(body.encode(), media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- test send and the real one ---------------------------------------------------------------


@router.post("/{issue_id}/test", response_class=HTMLResponse)
def test_send(request: Request, issue_id: DbId, viewer: EditorDep, session: SessionDep,
              to: Annotated[str, Form(max_length=5000)] = "") -> Response:
    issue = _issue(session, viewer, issue_id)
    addresses = [a for a in to.replace(",", " ").split() if a]
    try:
        sending.test_send(session, issue.id, addresses)
    except AppError as exc:
        out = issues.to_out(issue)
        form = forms.from_issue(out.model_dump(mode="json"),
                                subject_is_default=out.subject_is_default)
        form.errors["test_to"] = (str(exc.detail) if addresses
                                  else "Please enter at least one email address.")
        page = _compose_page(request, session, viewer, form, issue, status_code=422)
        return page
    return see_other(f"/admin/issues/{issue.id}?notice=test")


def _when(mode: str, at: str) -> tuple[Any, bool, str | None]:
    """(time, next slot?, problem) for the send form's choice."""
    if mode == "at":
        when = forms.parse_when(at)
        if when is None:
            return None, False, "Please give the date and time to send at (UTC)."
        return when, False, None
    return None, mode == "slot", None


@router.get("/{issue_id}/send", response_class=HTMLResponse)
def confirm_send(request: Request, issue_id: DbId, viewer: EditorDep, session: SessionDep,
                 mode: Literal["now", "at", "slot"] = "now",
                 at: Annotated[str, Query(max_length=40)] = "") -> HTMLResponse:
    """The confirmation: who it goes to, how many, when, and what the checks found."""
    issue = _issue(session, viewer, issue_id)
    when, slot, problem = _when(mode, at)
    if slot:
        when = _next_slot(issue.newsletter)
        if when is None:
            problem = f"{issue.newsletter.name} has no cadence slot set."
    return render(request, "confirm_send.html", {
        "title": f"Send {issue.label}?", "issue": issue, "mode": mode, "at": at, "when": when,
        "problem": problem, "readers": queries.audience_count(session, issue.newsletter_id),
        "checks": issues.checks(issue), "send": queries.send_of_issue(session, issue.id),
    }, status_code=422 if problem else 200)


@router.post("/{issue_id}/send", response_class=HTMLResponse)
def send_issue(request: Request, issue_id: DbId, viewer: EditorDep, session: SessionDep,
               mode: Annotated[Literal["now", "at", "slot"], Form()] = "now",
               at: Annotated[str, Form(max_length=40)] = "") -> Response:
    issue = _issue(session, viewer, issue_id)
    when, slot, problem = _when(mode, at)
    if problem:
        raise Invalid(problem)
    try:
        send = sending.schedule(session, issue.id, at=when, next_cadence_slot=slot,
                                actor=f"web:{viewer.user.email}")
    except AppError as exc:
        detail = exc.detail
        if isinstance(detail, dict):
            detail = f"{detail.get('message')}: " + "; ".join(detail.get("problems", []))
        return render(request, "confirm_send.html", {
            "title": f"Send {issue.label}?", "issue": issue, "mode": mode, "at": at,
            "when": when, "problem": str(detail),
            "readers": queries.audience_count(session, issue.newsletter_id),
            "checks": issues.checks(issue), "send": queries.send_of_issue(session, issue.id),
        }, status_code=exc.status_code)
    return see_other(f"/admin/sends/{send.id}")
