"""Every editor API route refuses a caller without a valid token; viewers may only read."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts

PARAM = re.compile(r"\{[^}]+\}")
CONVERTOR = re.compile(r":[a-z]+\}")

# The routes of the foundation; the walk over app.routes also catches any added later.
KNOWN = {
    ("GET", "/api/v1/newsletters"), ("POST", "/api/v1/newsletters"),
    ("GET", "/api/v1/newsletters/{slug}"), ("PATCH", "/api/v1/newsletters/{slug}"),
    ("GET", "/api/v1/subscribers"), ("POST", "/api/v1/subscribers"),
    ("GET", "/api/v1/subscribers/{subscriber_id}"),
    ("PATCH", "/api/v1/subscribers/{subscriber_id}"),
    ("DELETE", "/api/v1/subscribers/{subscriber_id}"),
    ("POST", "/api/v1/subscribers/import"), ("GET", "/api/v1/subscribers/export"),
}


def api_routes(app) -> list[tuple[str, str]]:
    """(method, path template) of every route under /api/v1, however deeply included.

    FastAPI keeps included routers nested in `app.routes`; `iter_route_contexts` flattens them.
    """
    found = set()
    for route in iter_route_contexts(app.routes):
        # `{issue_id:int}` in a route is `{issue_id}` in the document.
        path, methods = CONVERTOR.sub("}", route.path or ""), route.methods or set()
        if path and path.startswith("/api/v1"):
            found.update((m, path) for m in methods - {"HEAD", "OPTIONS"})
    # Belt and braces: whatever the OpenAPI schema lists is walked too.
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/api/v1"):
            found.update((m.upper(), path) for m in operations)
    return sorted(found)


def concrete(path: str, value: str = "1") -> str:
    """The template with its slug taking `value` and every id 1 (or `value` if numeric)."""
    def fill(match: re.Match[str]) -> str:
        return value if value.isdigit() or not match.group().endswith("_id}") else "1"
    return PARAM.sub(fill, path)


def test_the_walk_finds_every_known_route(client):
    assert not KNOWN - set(api_routes(client.app))


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-real-token"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
], ids=["no-token", "wrong-token", "empty-token", "basic-auth"])
def test_every_api_route_answers_401_without_a_valid_token(client, newsletter, headers):
    wrong = {}
    for method, path in api_routes(client.app):
        # Query parameters a route requires are given, so that only the token is missing.
        r = client.request(method, concrete(path), headers=headers,
                           params={"newsletter": "alliance-digest"})
        if r.status_code != 401 or "detail" not in r.json():
            wrong[f"{method} {path}"] = (r.status_code, r.text[:200])
    assert not wrong


def test_a_revoked_token_is_refused(client, newsletter):
    from app.auth import service as auth
    from app.db import session_scope

    with session_scope() as session:
        token = auth.create_token(session, name="rotated")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/newsletters", headers=headers).status_code == 200
    with session_scope() as session:
        auth.create_token(session, name="rotated", replace=True)
    r = client.get("/api/v1/newsletters", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_a_viewer_gets_403_on_every_write(client, newsletter, viewer_auth, add_subscriber, db):
    from sqlalchemy import func, select

    from app.subscribers.models import Subscriber

    someone = add_subscriber("kept@example.org", name="Kept")
    wrong = {}
    for method, path in api_routes(client.app):
        if method == "GET":
            continue
        url = concrete(path, str(someone["id"]) if "subscriber" in path else "alliance-digest")
        r = client.request(method, url, headers=viewer_auth,
                           params={"newsletter": "alliance-digest"})
        if r.status_code != 403:
            wrong[f"{method} {path}"] = (r.status_code, r.text[:200])
    assert not wrong
    # And nothing changed: the subscriber is still there, as it was.
    assert db.scalar(select(func.count()).select_from(Subscriber)) == 1
    assert client.get(f"/api/v1/subscribers/{someone['id']}", headers=viewer_auth
                      ).json()["name"] == "Kept"


def test_a_viewer_may_read(client, newsletter, viewer_auth, add_subscriber):
    someone = add_subscriber("reader@example.org")
    reads = {
        "/api/v1/newsletters": lambda r: r.json()["items"][0]["slug"] == "alliance-digest",
        "/api/v1/newsletters/alliance-digest": lambda r: r.json()["name"] == "Alliance Digest",
        "/api/v1/subscribers": lambda r: [i["id"] for i in r.json()["items"]] == [someone["id"]],
        f"/api/v1/subscribers/{someone['id']}":
            lambda r: r.json()["email"] == "reader@example.org",
        "/api/v1/subscribers/export": lambda r: "reader@example.org" in r.text,
    }
    for url, check in reads.items():
        r = client.get(url, headers=viewer_auth)
        assert r.status_code == 200, (url, r.text)
        assert check(r), (url, r.text)
    # Reads added later answer a viewer too (a dummy id may well be a 404, never a 401/403).
    for method, path in api_routes(client.app):
        # Token management is for admins only, reading included (tests/hardening/test_tokens).
        if method == "GET" and not path.startswith("/api/v1/tokens"):
            r = client.get(concrete(path), headers=viewer_auth)
            assert r.status_code not in (401, 403), (path, r.status_code)
