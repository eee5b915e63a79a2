"""The issue compose form: flat HTML form fields to and from the issue document.

Stories and links are numbered fields (`story-2-headline`); the buttons that add, remove and
move them are ordinary submit buttons (`action=story-up-2`), so the form needs no JavaScript.
Nothing here validates: the issue service does, and its problems are shown by field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.issues.schemas import MAX_LINKS, MAX_STORIES

_ACTION = re.compile(r"(story|link)-(add|remove|up|down)(?:-(\d{1,3}))?")


@dataclass
class ComposeForm:
    """What the compose form shows: the issue's fields as text, and the problems by field."""

    newsletter: str = ""
    volume: str = ""
    number: str = ""
    subject: str = ""
    preheader: str = ""
    hero_url: str = ""
    hero_alt: str = ""
    hero_credit: str = ""
    stories: list[dict[str, str]] = field(default_factory=list)
    links: list[dict[str, str]] = field(default_factory=list)
    footer: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    # Problems that belong to no field shown (or to the whole issue).
    general: list[str] = field(default_factory=list)

    def document(self, *, with_newsletter: bool) -> dict[str, Any]:
        """The issue document this form describes (as typed; the service validates it)."""
        doc: dict[str, Any] = {
            "volume": _number(self.volume), "number": _number(self.number),
            "subject": self.subject.strip() or None, "preheader": self.preheader,
            "hero_image": None,
            "stories": [{"headline": s["headline"], "body": s["body"],
                         "link": s["link"].strip() or None} for s in self.stories],
            "links": [{"label": lk["label"], "url": lk["url"]} for lk in self.links],
            "footer": self.footer if self.footer.strip() else None,
        }
        if self.hero_url.strip() or self.hero_alt.strip() or self.hero_credit.strip():
            doc["hero_image"] = {"url": self.hero_url, "alt": self.hero_alt,
                                 "credit": self.hero_credit}
        if with_newsletter:
            doc["newsletter"] = self.newsletter
        return doc

    def show_problems(self, problems: list[dict[str, Any]]) -> None:
        """Place each service problem next to its field, or with the general ones."""
        for p in problems:
            name = _FIELD_NAMES.get(p.get("field") or "") or _list_field(p.get("field"))
            if name and name not in self.errors:
                self.errors[name] = str(p["msg"])
            else:
                where = f"{p['field']}: " if p.get("field") else ""
                self.general.append(f"{where}{p['msg']}")

    def apply(self, action: str) -> bool:
        """Add, remove or move a story or link; False when `action` is none of these."""
        match = _ACTION.fullmatch(action)
        if match is None:
            return False
        kind, verb, index_text = match.groups()
        items = self.stories if kind == "story" else self.links
        limit = MAX_STORIES if kind == "story" else MAX_LINKS
        blank = ({"headline": "", "body": "", "link": ""} if kind == "story"
                 else {"label": "", "url": ""})
        i = int(index_text) if index_text is not None else -1
        if verb == "add" and len(items) < limit:
            items.append(blank)
        elif verb == "remove" and 0 <= i < len(items):
            items.pop(i)
        elif verb == "up" and 0 < i < len(items):
            items[i - 1], items[i] = items[i], items[i - 1]
        elif verb == "down" and 0 <= i < len(items) - 1:
            items[i + 1], items[i] = items[i], items[i + 1]
        return True


_FIELD_NAMES = {
    "newsletter": "newsletter", "volume": "volume", "number": "number", "subject": "subject",
    "preheader": "preheader", "hero_image": "hero_url", "hero_image.url": "hero_url",
    "hero_image.alt": "hero_alt", "hero_image.credit": "hero_credit", "footer": "footer",
    "stories": "stories", "links": "links",
}
_LIST_FIELD = re.compile(r"(stories|links)\[(\d+)\](?:\.(\w+))?")


def _list_field(path: str | None) -> str | None:
    match = _LIST_FIELD.fullmatch(path or "")
    if match is None:
        return None
    kind, index, name = match.groups()
    prefix = "story" if kind == "stories" else "link"
    return f"{prefix}-{index}-{name or ('headline' if kind == 'stories' else 'label')}"


def _number(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    # Not a number: passed on as typed, so the service says "must be a whole number".
    return int(text) if text.isdigit() and len(text) < 10 else text


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _count(form: Mapping[str, Any], name: str, limit: int) -> int:
    text = _text(form, name)
    return min(int(text), limit) if text.isdigit() and len(text) < 4 else 0


def from_form(form: Mapping[str, Any]) -> ComposeForm:
    """A ComposeForm from posted fields (unknown fields are ignored)."""
    out = ComposeForm()
    for name in ("newsletter", "volume", "number", "subject", "preheader", "hero_url",
                 "hero_alt", "hero_credit", "footer"):
        setattr(out, name, _text(form, name))
    for i in range(_count(form, "story_count", MAX_STORIES)):
        out.stories.append({k: _text(form, f"story-{i}-{k}") for k in ("headline", "body", "link")})
    for i in range(_count(form, "link_count", MAX_LINKS)):
        out.links.append({k: _text(form, f"link-{i}-{k}") for k in ("label", "url")})
    return out


def from_issue(data: Mapping[str, Any], *, subject_is_default: bool) -> ComposeForm:
    """A ComposeForm showing a stored issue (the API's issue shape)."""
    hero = data.get("hero_image") or {}
    return ComposeForm(
        newsletter=str(data.get("newsletter", "")), volume=str(data.get("volume", "")),
        number=str(data.get("number", "")),
        subject="" if subject_is_default else str(data.get("subject") or ""),
        preheader=str(data.get("preheader") or ""), hero_url=str(hero.get("url") or ""),
        hero_alt=str(hero.get("alt") or ""), hero_credit=str(hero.get("credit") or ""),
        stories=[{"headline": s.get("headline") or "", "body": s.get("body") or "",
                  "link": s.get("link") or ""} for s in data.get("stories") or []],
        links=[{"label": lk.get("label") or "", "url": lk.get("url") or ""}
               for lk in data.get("links") or []],
        footer=str(data.get("footer") or ""),
    )


def parse_when(text: str) -> datetime | None:
    """A `datetime-local` value, read as UTC (the form says so); None when it is no time."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
