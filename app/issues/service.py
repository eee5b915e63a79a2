"""Issues: the rules for writing, numbering, rendering, previewing and archiving them.

Only drafts change. Volume and number are unique within a newsletter and, when an editor leaves
them out, follow the series: after Vol 2.22 comes Vol 2.23.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from functools import lru_cache
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.issues import repository as repo
from app.issues.checks import presend_checks, setup_checks
from app.issues.models import Issue, issue_label
from app.issues.render import (
    NewsletterInfo,
    PrebuiltMessage,
    Recipient,
    RenderedEmail,
    build_message,
    personalise,
    render_issue,
)
from app.issues.schemas import (
    PDF_EDITION_URL,
    CheckReport,
    IssueContent,
    IssueDocument,
    IssueOut,
    IssuePage,
    IssuePatch,
    NextNumber,
    field_path,
    problems_from,
)
from app.newsletters import service as newsletters
from app.newsletters.models import Newsletter
from app.security import sign, unsign
from app.subscribers.models import Subscriber, Subscription

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_PAGE = 200
CONTENT_FIELDS = ("subject", "preheader", "hero_image", "stories", "links", "footer")
SAMPLE_READER = ("Sample Reader", "sample.reader@example.org")
# Which status may follow which; the sending pipeline moves issues along.
TRANSITIONS = {
    "draft": {"scheduled", "sending"},
    "scheduled": {"draft", "sending"},
    # A cancelled send: back to draft if nothing went out.
    "sending": {"sent", "draft"},
    "sent": set(),
}


class IssueInvalid(Invalid):
    """An issue document with problems; `detail` lists every one as {"loc","field","msg"}."""

    def __init__(self, problems: list[dict[str, Any]], status_code: int | None = None) -> None:
        super().__init__(problems, status_code)
        self.problems = problems

    def summary(self) -> str:
        """All problems on one line, for the command line."""
        parts = [f"{p['field']}: {p['msg']}" if p["field"] else p["msg"] for p in self.problems]
        noun = "problem" if len(parts) == 1 else "problems"
        return f"{len(parts)} {noun}: " + "; ".join(parts)


def _problem(loc: list[Any], msg: str, *, conflict: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"loc": loc, "field": field_path(loc), "msg": msg}
    if conflict:
        out["conflict"] = True
    return out


def _raise(problems: list[dict[str, Any]]) -> None:
    # A duplicate number alone is a conflict (409); anything else wrong is a 422 listing it all.
    only_conflicts = all(p.pop("conflict", False) for p in problems)
    raise IssueInvalid(problems, 409 if only_conflicts else 422)


# --- reading a document -----------------------------------------------------------------------


def parse_document(raw: bytes | str, *, kind: Literal["json", "yaml"]) -> Any:
    """The data in a JSON or YAML issue document, or Invalid saying where it breaks."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise Invalid(f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KB", 413)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid("the document is not UTF-8 text") from exc
    if kind == "json":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise Invalid(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                          ) from exc
    try:
        return yaml.safe_load(raw)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise Invalid(f"invalid YAML{where}: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise Invalid(f"invalid YAML: {exc}") from exc


def _context() -> dict[str, Any]:
    """How a document is validated to be stored: this server's own links kept as paths."""
    return {"base_url": get_settings().base_url, "store": True}


def _render_context() -> dict[str, Any]:
    """How a stored issue is read back: its paths made absolute on today's base URL."""
    return {"base_url": get_settings().base_url}


def _as_mapping(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise IssueInvalid([_problem([], "an issue must be a mapping of fields")])
    return data


# --- numbering --------------------------------------------------------------------------------


def propose_next(session: Session, newsletter: Newsletter) -> tuple[int, int]:
    """The volume and number the next issue of `newsletter` gets unless told otherwise."""
    last = repo.latest(session, newsletter.id)
    if last is None:
        return 1, 1
    return last.volume, last.number + 1


def next_number(session: Session, slug: str) -> NextNumber:
    newsletter = newsletters.get_by_slug(session, slug)
    volume, number = propose_next(session, newsletter)
    return NextNumber(newsletter=slug, volume=volume, number=number,
                      label=issue_label(volume, number))


def _numbering(
    session: Session, newsletter: Newsletter, volume: int | None, number: int | None
) -> tuple[int, int]:
    if volume is None and number is None:
        return propose_next(session, newsletter)
    if volume is None:
        last = repo.latest(session, newsletter.id)
        return (last.volume if last else 1), number or 1
    if number is None:
        return volume, (repo.max_number(session, newsletter.id, volume) or 0) + 1
    return volume, number


def _duplicate(session: Session, newsletter: Newsletter, volume: int, number: int,
               exclude: int | None = None) -> dict[str, Any] | None:
    other = repo.by_number(session, newsletter.id, volume, number)
    if other is None or other.id == exclude:
        return None
    return _problem(
        ["number"],
        f"{newsletter.slug} already has {issue_label(volume, number)} (issue {other.id}, "
        f"{other.status}); leave volume and number out to get the next one",
        conflict=True,
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- writing ----------------------------------------------------------------------------------


def create(session: Session, data: Any) -> Issue:
    """A new draft from an issue document; IssueInvalid listing every problem otherwise."""
    data = _as_mapping(data)
    problems: list[dict[str, Any]] = []
    document: IssueDocument | None = None
    try:
        document = IssueDocument.model_validate(data, context=_context())
    except ValidationError as exc:
        problems += problems_from(exc)

    newsletter: Newsletter | None = None
    slug = data.get("newsletter")
    if isinstance(slug, str) and slug.strip():
        try:
            newsletter = newsletters.get_by_slug(session, slug.strip())
        except NotFound:
            problems.append(_problem(["newsletter"], f"there is no newsletter {slug.strip()!r}"))

    volume = number = None
    if newsletter is not None:
        volume, number = _numbering(
            session, newsletter, _int_or_none(data.get("volume")), _int_or_none(data.get("number"))
        )
        duplicate = _duplicate(session, newsletter, volume, number)
        if duplicate:
            problems.append(duplicate)
    if problems:
        _raise(problems)
    assert document is not None and newsletter is not None
    assert volume is not None and number is not None
    issue = Issue(
        newsletter_id=newsletter.id, volume=volume, number=number, status="draft",
        **_stored(document.model_dump(include=set(CONTENT_FIELDS))),
    )
    issue.newsletter = newsletter
    _flush_unique(session, issue, newsletter)
    return issue


def _stored(fields: dict[str, Any]) -> dict[str, Any]:
    if "subject" in fields and not fields["subject"]:
        fields["subject"] = None  # an empty subject means the default one
    return fields


def _flush_unique(session: Session, issue: Issue, newsletter: Newsletter) -> None:
    # Two editors creating the same number at once: the second gets the same 409 as if it
    # had come later.
    try:
        with session.begin_nested():
            session.add(issue)
            session.flush()
    except IntegrityError:
        problem = _duplicate(session, newsletter, issue.volume, issue.number, exclude=issue.id)
        _raise([problem or _problem(["number"], "this number is taken", conflict=True)])


def document_kind(filename: str) -> Literal["json", "yaml"]:
    """JSON or YAML, by the file's extension."""
    lowered = filename.lower()
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith((".yaml", ".yml")):
        return "yaml"
    raise Invalid(f"{filename}: an issue file must end in .yaml, .yml or .json")


def load(session: Session, data: Any, *, replace: bool = False) -> tuple[Issue, bool]:
    """Create an issue from a document; with `replace`, a draft of the same newsletter, volume
    and number is rewritten from it instead. Returns the issue and whether it is new."""
    data = _as_mapping(data)
    slug, volume, number = (data.get("newsletter"), _int_or_none(data.get("volume")),
                            _int_or_none(data.get("number")))
    if replace and isinstance(slug, str) and volume is not None and number is not None:
        newsletter = newsletters.get_by_slug(session, slug.strip())
        existing = repo.by_number(session, newsletter.id, volume, number)
        if existing is not None:
            whole: dict[str, Any] = {"subject": None, "preheader": "", "hero_image": None,
                                     "stories": [], "links": [], "footer": None}
            whole.update({k: v for k, v in data.items() if k != "newsletter"})
            return update(session, existing.id, whole), False
    return create(session, data), True


def load_report(issue: Issue, *, created: bool) -> str:
    """What the command line says after loading an issue: where to preview it, what to fix."""
    out = to_out(issue)
    report = checks(issue)
    lines = [f"{'created' if created else 'replaced'} issue {out.id}: {out.subject} "
             f"({out.label}, {out.status})", f"preview: {out.preview_url}"]
    lines += [f"{p.severity}: {p.field + ': ' if p.field else ''}{p.message}"
              for p in report.problems]
    counts = [f"{n} {severity}{'s' if n > 1 else ''}" for severity in ("error", "warning")
              if (n := sum(1 for p in report.problems if p.severity == severity))]
    lines.append(f"checks: {', '.join(counts)} to look at before sending" if counts
                 else "checks: all passed")
    return "\n".join(lines)


def get(session: Session, issue_id: int) -> Issue:
    issue = repo.get(session, issue_id)
    if issue is None:
        raise NotFound(f"no issue {issue_id}")
    return issue


def _require_draft(issue: Issue, doing: str) -> None:
    if issue.status != "draft":
        raise Conflict(f"{issue.label} is {issue.status}: only a draft can be {doing}")


def update(session: Session, issue_id: int, data: Any) -> Issue:
    """Change the fields given of a draft; the result is checked as a whole."""
    issue = get(session, issue_id)
    _require_draft(issue, "changed")
    data = _as_mapping(data)
    problems: list[dict[str, Any]] = []
    patch: IssuePatch | None = None
    try:
        patch = IssuePatch.model_validate(data, context=_context())
    except ValidationError as exc:
        problems += problems_from(exc)
    volume = _int_or_none(data.get("volume")) or issue.volume
    number = _int_or_none(data.get("number")) or issue.number
    duplicate = _duplicate(session, issue.newsletter, volume, number, exclude=issue.id)
    if duplicate:
        problems.append(duplicate)
    if problems:
        _raise(problems)
    assert patch is not None
    given = patch.model_fields_set
    for key, value in _stored(patch.model_dump(include=given)).items():
        if value is None and key in ("volume", "number", "preheader", "stories", "links"):
            continue  # these cannot be unset; null leaves them as they are
        setattr(issue, key, value)
    issue.updated_at = utcnow()
    _flush_unique(session, issue, issue.newsletter)
    return issue


def delete(session: Session, issue_id: int) -> None:
    """Delete a draft."""
    issue = get(session, issue_id)
    _require_draft(issue, "deleted")
    session.delete(issue)
    session.flush()


def set_status(session: Session, issue: Issue, status: str, *, at: datetime | None = None
               ) -> Issue:
    """Move an issue along draft -> scheduled -> sending -> sent; `sent` records `sent_at`."""
    if status not in TRANSITIONS.get(issue.status, set()):
        raise Conflict(f"{issue.label} is {issue.status} and cannot become {status}")
    issue.status = status
    if status == "sent":
        issue.sent_at = at or utcnow()
    issue.updated_at = utcnow()
    session.flush()
    return issue


def list_page(session: Session, *, newsletter: str | None, status: str | None,
              cursor: str | None, limit: int) -> IssuePage:
    newsletter_id = newsletters.get_by_slug(session, newsletter).id if newsletter else None
    before: int | None = None
    if cursor:
        if not cursor.isdigit() or len(cursor) > 10:
            raise Invalid("cursor is not valid")
        before = int(cursor)
    rows, more = repo.page(session, newsletter_id=newsletter_id, status=status,
                           before_id=before, limit=limit)
    return IssuePage(items=[to_out(i) for i in rows],
                     next_cursor=str(more) if more is not None else None)


# --- shapes -----------------------------------------------------------------------------------


def content_of(issue: Issue) -> IssueContent:
    """The issue's content as the renderer takes it (a link to "@pdf-edition" made the URL of
    the issue's PDF edition); Invalid (422) when stored data breaks today's rules (written
    before a rule, or by another program), so that a preview or a send says why instead of
    failing."""
    links = [{**link, "url": pdf_url(issue)} if link.get("url") == PDF_EDITION_URL else link
             for link in issue.links]
    try:
        return IssueContent.model_validate({
            "volume": issue.volume, "number": issue.number, "subject": issue.subject,
            "preheader": issue.preheader, "hero_image": issue.hero_image,
            "stories": issue.stories, "links": links, "footer": issue.footer,
        }, context=_render_context())
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise Invalid(f"issue {issue.id} cannot be built: {problems}") from exc


def web_url(issue: Issue) -> str:
    base = get_settings().base_url
    return f"{base}/archive/{issue.newsletter.slug}/{issue.volume}.{issue.number}"


def pdf_url(issue: Issue) -> str:
    """Where the issue's PDF edition is public once it is sent."""
    return f"{web_url(issue)}.pdf"


def preview_key(issue: Issue) -> str:
    """A signed key that opens this issue's preview (the sample reader's copy) in a browser,
    without a token, for MISSIVE_PREVIEW_LINK_DAYS or until revoked."""
    return sign("issue-preview", {"i": issue.id, "e": issue.preview_epoch})


def check_preview_key(session: Session, issue_id: int, key: str) -> bool:
    """True if `key` is a live preview key of this issue (not forged, expired or revoked)."""
    max_age = get_settings().preview_link_days * 86400
    try:
        payload, _ = unsign("issue-preview", key, max_age_seconds=max_age)
    except Exception:  # noqa: BLE001  (forged, altered or expired: all simply "no")
        return False
    issue = session.get(Issue, issue_id)
    return issue is not None and payload == {"i": issue_id, "e": issue.preview_epoch}


def revoke_preview_links(session: Session, issue_id: int) -> Issue:
    """Void every preview link of this issue given out so far; `to_out` shows a new one."""
    issue = get(session, issue_id)
    issue.preview_epoch += 1
    session.flush()
    return issue


def to_out(issue: Issue) -> IssueOut:
    base = get_settings().base_url
    return IssueOut.model_validate({
        "id": issue.id,
        "newsletter": issue.newsletter.slug,
        "volume": issue.volume,
        "number": issue.number,
        "label": issue.label,
        "subject": issue.subject or f"{issue.newsletter.name} {issue.label}",
        "subject_is_default": not issue.subject,
        "preheader": issue.preheader,
        "hero_image": issue.hero_image,
        "stories": issue.stories,
        "links": issue.links,
        "footer": issue.footer,
        "status": issue.status,
        "sent_at": issue.sent_at,
        "created_at": issue.created_at,
        "updated_at": issue.updated_at,
        "web_url": web_url(issue),
        "preview_url": f"{base}/api/v1/issues/{issue.id}/preview?key={preview_key(issue)}",
    }, context=_render_context())


# --- rendering --------------------------------------------------------------------------------


def render(issue: Issue, *, date: datetime | None = None) -> RenderedEmail:
    """The issue rendered for email (inlined once; personal parts still markers)."""
    return render_issue(content_of(issue), NewsletterInfo.of(issue.newsletter),
                        base_url=get_settings().base_url, date=date or utcnow())


def prebuilt(issue: Issue, *, date: datetime | None = None,
             extra_headers: dict[str, str] | None = None) -> PrebuiltMessage:
    """The issue as a pre-built message, ready for `personalise` per reader; `extra_headers`
    go into every copy (e.g. the send's Feedback-ID)."""
    return build_message(render(issue, date=date), extra_headers=extra_headers)


def recipient_for(subscription: Subscription, *, message_id: str | None = None) -> Recipient:
    """The personal parts for one subscription: its name, address and unsubscribe links."""
    from app.subscribers.unsubscribe import unsubscribe_links, unsubscribe_token

    url, mailto = unsubscribe_links(unsubscribe_token(subscription))
    subscriber = subscription.subscriber
    return Recipient(email=subscriber.email, name=subscriber.name, unsubscribe_url=url,
                     unsubscribe_mailto=mailto, message_id=message_id)


def sample_recipient(session: Session, issue: Issue, subscriber_id: int | None) -> Recipient:
    """Who a preview is made for: a subscriber of the issue's newsletter, or a made-up reader
    whose unsubscribe link leads nowhere."""
    if subscriber_id is None:
        name, address = SAMPLE_READER
        base = get_settings().base_url
        return Recipient(email=address, name=name, unsubscribe_url=f"{base}/u/preview-sample")
    subscriber = session.get(Subscriber, subscriber_id)
    subscription = next(
        (s for s in (subscriber.subscriptions if subscriber else [])
         if s.newsletter_id == issue.newsletter_id), None,
    )
    if subscription is None:
        raise NotFound(f"subscriber {subscriber_id} is not on {issue.newsletter.slug}")
    return recipient_for(subscription)


def preview_message(session: Session, issue: Issue, subscriber_id: int | None = None) -> bytes:
    """The exact bytes a reader would be sent (the sample reader unless one is named)."""
    return personalise(prebuilt(issue), sample_recipient(session, issue, subscriber_id))


def message_part(message: bytes, subtype: Literal["html", "plain"]) -> str:
    """One part of a message, decoded as a mail client decodes it."""
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body((subtype,))
    assert part is not None
    return str(part.get_content())


def checks(issue: Issue) -> CheckReport:
    """The pre-send checks, measured on the HTML the sample reader gets."""
    rendered = render(issue)
    name, address = SAMPLE_READER
    # A realistic unsubscribe URL length, so the size is what a reader's copy weighs.
    sample = Recipient(email=address, name=name,
                       unsubscribe_url=f"{get_settings().base_url}/u/{'x' * 96}")
    html, _ = rendered.fill(sample)
    problems = presend_checks(content_of(issue), NewsletterInfo.of(issue.newsletter), html)
    settings = get_settings()
    problems += setup_checks(
        base_url=settings.base_url,
        dkim_configured=bool(settings.dkim_domain and settings.dkim_selector
                             and settings.dkim_private_key_path))
    return CheckReport(ok=not any(p.severity == "error" for p in problems),
                       html_bytes=len(html.encode("utf-8")), problems=problems)


# --- the public archive -----------------------------------------------------------------------


def archive_newsletter(session: Session, slug: str) -> Newsletter:
    return newsletters.get_by_slug(session, slug)


def sent_issues(session: Session, newsletter: Newsletter, *, limit: int = 500
                ) -> Sequence[Issue]:
    """Sent issues, newest first. Drafts and scheduled or sending issues never show."""
    return repo.sent(session, newsletter.id, limit=limit)


def sent_issue(session: Session, newsletter: Newsletter, number: str) -> Issue:
    """A sent issue by its number as it appears in URLs, "2.22"; NotFound otherwise."""
    volume_text, dot, number_text = number.partition(".")
    if not (dot and volume_text.isdigit() and number_text.isdigit()
            and len(volume_text) <= 4 and len(number_text) <= 4):
        raise NotFound(f"no issue {number!r} in the archive")
    issue = repo.by_number(session, newsletter.id, int(volume_text), int(number_text),
                           status="sent")
    if issue is None:
        raise NotFound(f"no issue {number!r} in the archive")
    return issue


def web_version(issue: Issue) -> str:
    """The archive page of a sent issue: the email's HTML with no personal parts."""
    content = content_of(issue)
    return _web_html(content.model_dump_json(), NewsletterInfo.of(issue.newsletter),
                     get_settings().base_url, (issue.sent_at or issue.created_at).isoformat())


@lru_cache(maxsize=64)
def _web_html(content_json: str, newsletter: NewsletterInfo, base_url: str, date: str) -> str:
    # Sent issues do not change, so their inlined HTML is kept rather than re-made per visit.
    content = IssueContent.model_validate_json(content_json)
    return render_issue(content, newsletter, base_url=base_url,
                        date=datetime.fromisoformat(date), web=True).html
