"""Every state-changing request of the newsroom without its CSRF token, or from another site,
is refused with 403 and changes nothing. The routes are read from the app itself, so a new
form is covered the day it is added."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.newsroom.conftest import BASE, csrf_of

TABLES = ("users", "user_sessions", "user_newsletters", "api_tokens", "newsletters", "issues",
          "sends", "deliveries", "subscribers", "subscriptions", "suppressions", "consent_events")


def _fingerprint() -> str:
    from app.db import get_engine

    digest = hashlib.sha256()
    with get_engine().connect() as conn:
        for table in TABLES:
            # last_seen_at moves when a page is merely viewed; it is not a change of state.
            rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")).mappings().all()  # noqa: S608
            for row in rows:
                digest.update(repr(sorted((k, v) for k, v in row.items()
                                          if k != "last_seen_at")).encode())
    return digest.hexdigest()


def _admin_posts() -> list[str]:
    from app.newsroom.router import ROUTERS

    paths = set()
    for route in [r for router in ROUTERS for r in router.routes]:
        methods = getattr(route, "methods", set()) or set()
        path = getattr(route, "path", "")
        if path.startswith("/admin") and methods & {"POST", "PUT", "PATCH", "DELETE"}:
            paths.add(path)
    return sorted(paths)


POSTS = _admin_posts()


def test_the_guarded_routes_are_found():
    assert "/admin/issues/{issue_id}/send" in POSTS and "/admin/sign-out" in POSTS
    assert len(POSTS) >= 12


@pytest.fixture
def world(newsletter, db, make_user, test_env) -> dict[str, Any]:
    from app import demo
    from app.db import utcnow
    from app.newsroom import accounts
    from app.sending import service as sending
    from app.subscribers.models import Subscriber, Subscription

    sample = demo.sample_issue(db, newsletter)
    draft_data = {"newsletter": "alliance-digest", "stories": [{"headline": "Draft"}]}
    from app.issues import service as issues

    draft = issues.create(db, draft_data)
    send = sending.schedule(db, sample.id, at=utcnow() + timedelta(days=1),
                            next_cadence_slot=False, actor="tests")
    reader = Subscriber(email="reader@example.org", email_key="reader@example.org")
    db.add(reader)
    db.flush()
    db.add(Subscription(subscriber_id=reader.id, newsletter_id=newsletter.id, status="active"))
    other = make_user("other@example.org", "viewer")
    user = accounts.find_user(db, "other@example.org")
    token = accounts.issue_sign_in_token(db, user)
    db.commit()
    return {"issue_id": draft.id, "send_id": send.id, "subscriber_id": reader.id,
            "user_id": other.id, "token": token, "slug": "alliance-digest", "kind": "yaml"}


def _path(template: str, world: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(world.get(m.group(1), 1)), template)


BODY = {"subject": "changed", "story_count": "0", "link_count": "0", "mode": "now",
        "to": "someone@example.org", "email": "new@example.org", "password": "whatever123",
        "current": "x", "new": "a brand new password", "confirm": "a brand new password",
        "role": "admin", "name": "Changed", "status": "unsubscribed", "note": "lifted"}


@pytest.mark.parametrize("route", POSTS)
def test_no_token_or_foreign_origin_is_refused_and_changes_nothing(route, signed_in, world):
    admin = signed_in("admin")
    good = csrf_of(admin.get("/admin").text)
    path = _path(route, world)
    before = _fingerprint()
    attempts = [
        ({}, {"Origin": BASE}),                                     # no token
        ({"csrf_token": "forged"}, {"Origin": BASE}),               # a wrong token
        ({"csrf_token": good}, {"Origin": "https://evil.example"}),  # another site
        ({"csrf_token": good}, {"Origin": "null"}),                 # a sandboxed frame
    ]
    for extra, headers in attempts:
        r = admin.post(path, data={**BODY, **extra}, headers=headers, follow_redirects=False)
        assert r.status_code == 403, (path, extra, headers, r.status_code, r.text[:300])
    assert _fingerprint() == before, f"{path} changed something while refusing"
