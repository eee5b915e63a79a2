"""The issue document (CONTRACT "An issue"), its validation and the API's answers.

Validation explains itself: every problem in a document is reported at once, each with the
place it is at (`stories[2].headline`) and what to change.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from app import media_links
from app.issues import markdown
from app.validation import CONTROL, CONTROL_MULTILINE

# Single-line fields follow the one rule of app/validation.py; in Markdown, line breaks and
# tabs are fine, other control characters are not.
_CONTROL = CONTROL
_CONTROL_MULTILINE = CONTROL_MULTILINE
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f<>\"\\`{}|^]")

MAX_URL = 2000
MAX_STORIES = 40
MAX_LINKS = 20
MAX_BODY = 40_000
# A link url that stands for the issue's own PDF edition (/archive/{slug}/{v}.{n}.pdf), so
# an editor can link to it without uploading a file.
PDF_EDITION_URL = "@pdf-edition"


def _single_line(max_length: int, *, required: bool = False) -> Any:
    def check(value: str) -> str:
        if _CONTROL.search(value):
            raise PydanticCustomError(
                "line_break", "must be one line, without line breaks or control characters"
            )
        value = value.strip()
        if required and not value:
            raise PydanticCustomError("empty", "must not be empty")
        if len(value) > max_length:
            raise PydanticCustomError(
                "too_long", "is longer than {max} characters", {"max": max_length}
            )
        return value

    return AfterValidator(check)


def _markdown(max_length: int) -> Any:
    def check(value: str) -> str:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        if _CONTROL_MULTILINE.search(value):
            raise PydanticCustomError("control", "must not contain control characters")
        value = value.strip()
        if len(value) > max_length:
            raise PydanticCustomError(
                "too_long", "is longer than {max} characters", {"max": max_length}
            )
        bad = [f for f in markdown.find_links(value) if not markdown.is_absolute_url(f.url)]
        if bad:
            listed = "; ".join(f"{f.kind} {f.text!r} points to {f.url!r}" for f in bad)
            raise PydanticCustomError(
                "markdown_url",
                "links and images need a full https:// address: {listed}", {"listed": listed},
            )
        return value

    return AfterValidator(check)


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


def _url(schemes: tuple[str, ...], *, pdf_edition: bool = False) -> Any:
    def check(value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if pdf_edition and value == PDF_EDITION_URL:
            return value  # resolved when the issue is rendered
        context = info.context or {}
        base = context.get("base_url")
        if base and context.get("store"):
            # Our own files are stored as paths, so a change of host or port breaks no link
            # (app/media_links.py); they get the current host when the issue is rendered.
            value = media_links.for_storage(value, base)
            if media_links.is_app_path(value):
                if len(value) > MAX_URL or _URL_FORBIDDEN.search(value):
                    raise PydanticCustomError("url", "{url} is not a usable path on this server",
                                              {"url": repr(value[:200])})
                return value
        elif base:
            value = media_links.absolute(value, base)
        if len(value) > MAX_URL:
            raise PydanticCustomError("too_long", "is longer than {max} characters",
                                      {"max": MAX_URL})
        if _URL_FORBIDDEN.search(value) or not markdown.is_absolute_url(value, schemes):
            names = [f"{s}://" if s != "mailto" else "mailto:" for s in schemes]
            kinds = ", ".join(names[:-1]) + " or " + names[-1]
            raise PydanticCustomError(
                "url", "{url} is not a full {kinds} address", {"url": repr(value), "kinds": kinds}
            )
        return value

    return AfterValidator(check)


SingleLine = Annotated[str, BeforeValidator(_none_as_empty), _single_line(250)]
Headline = Annotated[str, _single_line(300, required=True)]
Label = Annotated[str, _single_line(200, required=True)]
WebUrl = Annotated[str, _url(("https", "http"))]
LinkUrl = Annotated[str, _url(("https", "http", "mailto"))]
IssueLinkUrl = Annotated[str, _url(("https", "http", "mailto"), pdf_edition=True)]
StoryBody = Annotated[str, BeforeValidator(_none_as_empty), _markdown(MAX_BODY)]
Footer = Annotated[str, _markdown(10_000)]
Volume = Annotated[int, Field(ge=1, le=9999)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class HeroImage(_Strict):
    url: WebUrl
    alt: Annotated[str, BeforeValidator(_none_as_empty), _single_line(500)] = ""
    credit: Annotated[str, BeforeValidator(_none_as_empty), _single_line(300)] = ""
    # The image's size in pixels: the email gives it a height from them, so the layout keeps
    # its shape while images are off or loading (Outlook honours only the attributes).
    width: Annotated[int, Field(ge=1, le=20000)] | None = None
    height: Annotated[int, Field(ge=1, le=20000)] | None = None


class Story(_Strict):
    headline: Headline
    body: StoryBody = ""
    link: LinkUrl | None = None


class IssueLink(_Strict):
    label: Label
    url: IssueLinkUrl


class IssueContent(_Strict):
    """What an issue says: everything the renderer needs besides the newsletter."""

    volume: Volume
    number: Volume
    subject: Annotated[str, _single_line(250)] | None = None
    preheader: SingleLine = ""
    hero_image: HeroImage | None = None
    stories: Annotated[list[Story], Field(max_length=MAX_STORIES)] = []
    links: Annotated[list[IssueLink], Field(max_length=MAX_LINKS)] = []
    footer: Footer | None = None


class IssueDocument(_Strict):
    """An issue as an editor writes it (YAML, JSON, the API's POST body)."""

    newsletter: Annotated[str, _single_line(64, required=True)]
    # Either may be left out: the newsletter's series proposes the next number.
    volume: Volume | None = None
    number: Volume | None = None
    subject: Annotated[str, _single_line(250)] | None = None
    preheader: SingleLine = ""
    hero_image: HeroImage | None = None
    stories: Annotated[list[Story], Field(max_length=MAX_STORIES)] = []
    links: Annotated[list[IssueLink], Field(max_length=MAX_LINKS)] = []
    footer: Footer | None = None


class IssuePatch(_Strict):
    """A PATCH body: only the fields given change; `null` resets subject, footer or hero."""

    volume: Volume | None = None
    number: Volume | None = None
    subject: Annotated[str, _single_line(250)] | None = None
    preheader: SingleLine | None = None
    hero_image: HeroImage | None = None
    stories: Annotated[list[Story], Field(max_length=MAX_STORIES)] | None = None
    links: Annotated[list[IssueLink], Field(max_length=MAX_LINKS)] | None = None
    footer: Footer | None = None


IssueStatus = Literal["draft", "scheduled", "sending", "sent"]


class IssueOut(BaseModel):
    id: int
    newsletter: str
    volume: int
    number: int
    label: str
    subject: str
    subject_is_default: bool
    preheader: str
    hero_image: HeroImage | None
    stories: list[Story]
    links: list[IssueLink]
    footer: str | None
    status: IssueStatus
    sent_at: datetime | None
    created_at: datetime
    updated_at: datetime
    web_url: str
    preview_url: str


class IssuePage(BaseModel):
    items: list[IssueOut]
    next_cursor: str | None


class NextNumber(BaseModel):
    newsletter: str
    volume: int
    number: int
    label: str


class Check(BaseModel):
    """One finding of the pre-send checks."""

    severity: Literal["error", "warning"]
    code: str
    field: str | None
    message: str


class CheckReport(BaseModel):
    ok: bool
    html_bytes: int
    problems: list[Check]


# --- turning pydantic's errors into a list an editor can act on -------------------------------


def field_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """("stories", 2, "headline") -> "stories[2].headline"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field of an issue (check the spelling)",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "string_type": "must be text",
    "list_type": "must be a list",
    "model_type": "must be a mapping of fields",
    "model_attributes_type": "must be a mapping of fields",
    "dict_type": "must be a mapping of fields",
}


def problems_from(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as `{"loc", "field", "msg"}`, worded for an editor."""
    out: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = _MESSAGES.get(error["type"], error["msg"])
        if loc and loc[-1] == "headline" and error["type"] in ("missing", "empty"):
            message = "a story needs a headline"
        out.append({"loc": loc, "field": field_path(loc), "msg": message})
    return out
