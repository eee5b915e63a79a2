from __future__ import annotations

from fastapi import APIRouter, status

from app.auth.deps import TokenDep, token_scope
from app.db import SessionDep
from app.newsletters import service
from app.newsletters.schemas import NewsletterCreate, NewsletterOut, NewsletterUpdate

router = APIRouter(prefix="/api/v1/newsletters", tags=["newsletters"])


@router.get("")
def list_newsletters(session: SessionDep, token: TokenDep) -> dict[str, list[NewsletterOut]]:
    # A token limited to some newsletters lists only those.
    scope = token_scope(session, token)
    return {"items": [NewsletterOut.model_validate(n) for n in service.list_all(session)
                      if scope is None or n.id in scope]}


@router.post("", status_code=status.HTTP_201_CREATED)
def create_newsletter(body: NewsletterCreate, session: SessionDep, _: TokenDep) -> NewsletterOut:
    return NewsletterOut.model_validate(service.create(session, body))


@router.get("/{slug}")
def get_newsletter(slug: str, session: SessionDep, _: TokenDep) -> NewsletterOut:
    return NewsletterOut.model_validate(service.get_by_slug(session, slug))


@router.patch("/{slug}")
def update_newsletter(
    slug: str, body: NewsletterUpdate, session: SessionDep, _: TokenDep
) -> NewsletterOut:
    return NewsletterOut.model_validate(service.update(session, slug, body))
