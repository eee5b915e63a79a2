"""Fixtures for the newsroom: accounts with passwords, signed-in test clients, a second
newsletter to be kept out of."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

BASE = "https://news.example.org"
PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture
def make_user(test_env: dict[str, str]) -> Callable[..., Any]:
    def make(email: str, role: str = "editor", newsletters: tuple[str, ...] = ()) -> Any:
        from app.db import session_scope
        from app.newsletters import service as newsletters_service
        from app.newsroom import accounts

        with session_scope() as session:
            ids = [newsletters_service.get_by_slug(session, s).id for s in newsletters]
            return accounts.create_user(session, email=email, role=role, password=PASSWORD,
                                        newsletter_ids=ids)

    return make


def sign_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    page = client.get("/admin/sign-in")
    assert page.status_code == 200
    return client.post("/admin/sign-in", data={
        "email": email, "password": password, "csrf_token": csrf_of(page.text), "next": "/admin",
    }, headers={"Origin": BASE}, follow_redirects=False)


@pytest.fixture
def signed_in(test_env: dict[str, str], make_user: Callable[..., Any]
              ) -> Iterator[Callable[..., Any]]:
    """A factory: a TestClient signed in as a new user of the given role and scope."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    clients: list[Any] = []

    def make(role: str = "editor", email: str | None = None,
             newsletters: tuple[str, ...] = ()) -> Any:
        email = email or f"{role}{len(clients)}@example.org"
        make_user(email, role, newsletters)
        client = TestClient(create_app(), base_url=BASE)
        client.__enter__()
        clients.append(client)
        response = sign_in(client, email)
        assert response.status_code == 303, response.text
        client.headers["Origin"] = BASE
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def other_newsletter(test_env: dict[str, str]) -> Any:
    from app.db import session_scope
    from app.newsletters import service as newsletters_service
    from app.newsletters.schemas import NewsletterCreate

    with session_scope() as session:
        return newsletters_service.create(session, NewsletterCreate(
            slug="river-notes", name="River Notes", from_name="River Notes",
            from_email="notes@riverside-water.example.org"))
