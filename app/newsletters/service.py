"""Newsletters: the lists readers sign up to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, Invalid, NotFound
from app.newsletters.models import Newsletter
from app.newsletters.schemas import NewsletterCreate, NewsletterUpdate
from app.validation import clean_multiline, clean_text, normalise_email

# Used with fullmatch: `$` would let a trailing newline through.
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")


def get_by_slug(session: Session, slug: str) -> Newsletter:
    """The newsletter called `slug`, or NotFound."""
    if not SLUG.fullmatch(slug):
        # Not a slug any newsletter can have; a NUL byte in it would not even reach PostgreSQL.
        raise NotFound(f"no newsletter {slug[:80]!r}")
    newsletter = session.scalars(select(Newsletter).where(Newsletter.slug == slug)).first()
    if newsletter is None:
        raise NotFound(f"no newsletter {slug!r}")
    return newsletter


def list_all(session: Session) -> Sequence[Newsletter]:
    return session.scalars(select(Newsletter).order_by(Newsletter.slug)).all()


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    for key in ("name", "from_name"):
        if key in out and out[key] is not None:
            out[key] = clean_text(out[key], field=key, max_length=200)
            if not out[key]:
                raise Invalid(f"{key} must not be empty")
    for key, limit in (("description", 2000), ("footer", 10000), ("postal_address", 1000)):
        if key in out:
            out[key] = clean_multiline(out[key], field=key, max_length=limit)
    if out.get("from_email") is not None:
        out["from_email"] = normalise_email(out["from_email"])
    if out.get("reply_to"):
        out["reply_to"] = normalise_email(out["reply_to"])
    return out


def _check_feed_drafts(newsletter: Newsletter) -> None:
    # Beat drafts a set time before each slot: without a feed or a slot there is nothing to do.
    if (newsletter.feed_drafts or "off") == "off":
        return
    if not newsletter.feed_url:
        raise Invalid("feed_drafts needs a feed_url")
    if newsletter.cadence in ("none", None) or newsletter.cadence_anchor is None:
        raise Invalid("feed_drafts needs a cadence and a cadence_anchor (the slots to draft for)")


def create(session: Session, data: NewsletterCreate) -> Newsletter:
    """A new newsletter; Conflict if the slug is taken."""
    if not SLUG.fullmatch(data.slug):
        raise Invalid("slug must be lowercase letters, digits and inner hyphens")
    if session.scalars(select(Newsletter.id).where(Newsletter.slug == data.slug)).first():
        raise Conflict(f"a newsletter {data.slug!r} exists already")
    newsletter = Newsletter(**_clean(data.model_dump()))
    _check_feed_drafts(newsletter)
    try:
        # A savepoint: a create of the same slug committing meanwhile is a Conflict, not a 500.
        with session.begin_nested():
            session.add(newsletter)
    except IntegrityError as exc:
        raise Conflict(f"a newsletter {data.slug!r} exists already") from exc
    return newsletter


def update(session: Session, slug: str, data: NewsletterUpdate) -> Newsletter:
    newsletter = get_by_slug(session, slug)
    fields = _clean(data.model_dump(exclude_unset=True))
    for key, value in fields.items():
        if value is None and key in ("name", "from_name", "from_email", "cadence", "feed_drafts",
                                     "feed_draft_hours_before", "editor_emails"):
            raise Invalid(f"{key} may not be null")
        setattr(newsletter, key, value)
    _check_feed_drafts(newsletter)
    session.flush()
    return newsletter
