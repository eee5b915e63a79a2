"""Helpers for the editor API tests: tokens of each role and a quick way to add subscribers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def viewer_auth(test_env: dict[str, str]) -> dict[str, str]:
    """Headers carrying a token of the read-only `viewer` role."""
    from app.auth import service as auth
    from app.db import session_scope

    with session_scope() as session:
        token = auth.create_token(session, name="viewer", role="viewer")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def add_subscriber(client: Any, auth: dict[str, str], newsletter: Any
                   ) -> Callable[..., dict[str, Any]]:
    """Create a subscriber through the API (on the sample newsletter unless told otherwise)."""

    def add(email: str, name: str = "", status: str | None = "active",
            attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"email": email, "name": name, "attributes": attributes or {}}
        if status is not None:
            body["subscriptions"] = [{"newsletter": "alliance-digest", "status": status}]
        r = client.post("/api/v1/subscribers", json=body, headers=auth)
        assert r.status_code == 201, r.text
        return dict(r.json())

    return add
