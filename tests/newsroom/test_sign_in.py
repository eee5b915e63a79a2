"""Signing in and out of the newsroom: cookies, CSRF, rate limits, sessions that end."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.newsroom.conftest import BASE, PASSWORD, csrf_of, sign_in


def _app_client() -> TestClient:
    from app.main import create_app

    return TestClient(create_app(), base_url=BASE)


def test_root_leads_to_sign_in_then_to_the_admin(client, make_user):
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/sign-in"
    r = client.get("/admin/account?tab=2", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/sign-in?next=/admin/account%3Ftab%3D2"
    make_user("ed@example.org")
    assert sign_in(client, "ed@example.org").status_code == 303
    r = client.get("/", follow_redirects=False)
    assert r.headers["location"] == "/admin"
    page = client.get("/admin")
    assert page.status_code == 200 and "Dashboard" in page.text and "ed@example.org" in page.text


def test_session_cookie_flags(client, make_user):
    make_user("ed@example.org")
    r = sign_in(client, "ed@example.org")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-missive_session=")
    flags = {f.strip().lower() for f in cookie.split(";")}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags
    assert not any(f.startswith("domain=") for f in flags)


def test_wrong_password_and_unknown_address_are_refused_alike(client, make_user):
    make_user("ed@example.org")
    wrong = sign_in(client, "ed@example.org", "not the password")
    unknown = sign_in(client, "nobody@example.org", PASSWORD)
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert "do not match an account" in r.text
        assert "missive_session" not in r.headers.get("set-cookie", "")
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_sign_in_is_rate_limited(client, make_user):
    make_user("ed@example.org")
    codes = [sign_in(client, "ed@example.org", f"guess number {i}").status_code
             for i in range(8)]
    assert codes == [401] * 8
    # Even the right password is refused now: the limit is on attempts, not failures.
    r = sign_in(client, "ed@example.org")
    assert r.status_code == 429 and "Too many attempts" in r.text
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_sign_in_form_needs_its_csrf_token_and_our_origin(client, make_user):
    make_user("ed@example.org")
    page = client.get("/admin/sign-in")
    data = {"email": "ed@example.org", "password": PASSWORD, "next": "/admin"}
    assert client.post("/admin/sign-in", data=data, headers={"Origin": BASE}).status_code == 403
    data["csrf_token"] = csrf_of(page.text)
    r = client.post("/admin/sign-in", data=data, headers={"Origin": "https://evil.example"},
                    follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/admin/sign-in", data=data,
                    headers={"Referer": "https://evil.example/page"}, follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/admin", follow_redirects=False).status_code == 303
    r = client.post("/admin/sign-in", data=data, headers={"Origin": BASE},
                    follow_redirects=False)
    assert r.status_code == 303


def test_next_never_leads_off_site(client, make_user):
    make_user("ed@example.org")
    page = client.get("/admin/sign-in")
    for target, expected in (("https://evil.example/", "/admin"), ("//evil.example", "/admin"),
                             ("/admin/sends", "/admin/sends")):
        client.cookies.clear()
        page = client.get("/admin/sign-in")
        r = client.post("/admin/sign-in", data={
            "email": "ed@example.org", "password": PASSWORD, "next": target,
            "csrf_token": csrf_of(page.text)}, headers={"Origin": BASE}, follow_redirects=False)
        assert r.headers["location"] == expected


def test_sign_out_ends_the_session_on_the_server(client, make_user):
    make_user("ed@example.org")
    sign_in(client, "ed@example.org")
    cookie = dict(client.cookies)
    page = client.get("/admin")
    # Without the token, sign-out is refused and the session lives on.
    assert client.post("/admin/sign-out", headers={"Origin": BASE}).status_code == 403
    assert client.get("/admin").status_code == 200
    r = client.post("/admin/sign-out", data={"csrf_token": csrf_of(page.text)},
                    headers={"Origin": BASE}, follow_redirects=False)
    assert r.status_code == 303
    # The old cookie, replayed, no longer signs anyone in.
    with _app_client() as replay:
        replay.cookies.update(cookie)
        assert replay.get("/admin", follow_redirects=False).status_code == 303


def test_password_change_ends_the_other_sessions(client, make_user):
    make_user("ed@example.org")
    with _app_client() as other:
        sign_in(other, "ed@example.org")
        assert other.get("/admin").status_code == 200
        sign_in(client, "ed@example.org")
        page = client.get("/admin/account")
        token = csrf_of(page.text)
        bad = client.post("/admin/account/password", data={
            "csrf_token": token, "current": "wrong wrong", "new": "a new long password",
            "confirm": "a new long password"}, headers={"Origin": BASE})
        assert bad.status_code == 422 and "current password is not right" in bad.text
        short = client.post("/admin/account/password", data={
            "csrf_token": token, "current": PASSWORD, "new": "short", "confirm": "short"},
            headers={"Origin": BASE})
        assert short.status_code == 422 and "at least 10 characters" in short.text
        ok = client.post("/admin/account/password", data={
            "csrf_token": token, "current": PASSWORD, "new": "a new long password",
            "confirm": "a new long password"}, headers={"Origin": BASE})
        assert ok.status_code == 200 and "other sessions have been signed out" in ok.text
        assert client.get("/admin").status_code == 200
        assert other.get("/admin", follow_redirects=False).status_code == 303
    client.cookies.clear()
    assert sign_in(client, "ed@example.org").status_code == 401
    assert sign_in(client, "ed@example.org", "a new long password").status_code == 303


def test_passwords_are_stored_with_argon2(db, make_user):
    from sqlalchemy import select

    from app.auth.models import User

    make_user("ed@example.org")
    stored = db.scalars(select(User.password_hash)).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_one_time_sign_in_link_works_once(client, test_env):
    from app.db import session_scope
    from app.newsroom import accounts

    with session_scope() as session:
        user = accounts.create_user(session, email="new@example.org", role="admin")
        token = accounts.issue_sign_in_token(session, user)
    page = client.get(f"/admin/sign-in/{token}")
    # Opening the link changes nothing (mail scanners open links): a button signs in.
    assert page.status_code == 200 and "<button" in page.text
    assert client.get("/admin", follow_redirects=False).status_code == 303
    r = client.post(f"/admin/sign-in/{token}", data={"csrf_token": csrf_of(page.text)},
                    headers={"Origin": BASE}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/account"
    assert "Choose a password" in client.get("/admin/account").text
    client.cookies.clear()
    page = client.get(f"/admin/sign-in/{token}")
    r = client.post(f"/admin/sign-in/{token}", data={"csrf_token": csrf_of(page.text)},
                    headers={"Origin": BASE, "Accept": "text/html"})
    assert r.status_code == 410 and "has been used or has expired" in r.text


def test_docs_load_nothing_from_another_host(client):
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    for url in urls:
        assert client.get(url).status_code == 200, url
    assert "cdn." not in page.text and "https://" not in page.text
