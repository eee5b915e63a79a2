"""Every HTML page carries the security headers, with a strict policy on our own pages."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.headers import PAGE_CSP
from app.subscribers.models import Subscription


def _assert_headers(r, *, strict: bool = True) -> None:
    assert r.headers["x-content-type-options"] == "nosniff", r.url
    assert r.headers["x-frame-options"] == "DENY", r.url
    assert r.headers["referrer-policy"] == "no-referrer", r.url
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    if strict:
        assert csp == PAGE_CSP
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp
        # Nothing inline that the policy would block: no <style>, no <script>, no style="".
        assert not re.search(r"<style|<script|\sstyle=|\son[a-z]+=", r.text), r.url


def test_public_pages(client, newsletter, db, make_sent_issue):
    from app.signup.service import confirm_token, unsubscribe_token

    page = client.get("/subscribe/alliance-digest")
    assert page.status_code == 200
    _assert_headers(page)
    stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    assert stylesheet
    css = client.get(stylesheet.group(1))
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")

    _assert_headers(client.post("/subscribe/alliance-digest", data={"email": "x@example.org"}))
    sub = db.scalars(select(Subscription)).one()
    for path in (f"/confirm/{confirm_token(sub)}", "/confirm/forged",
                 f"/u/{unsubscribe_token(sub)}", "/u/forged", "/subscribe/no-such-newsletter"):
        _assert_headers(client.get(path, headers={"accept": "text/html"}))
    _assert_headers(client.post(f"/confirm/{confirm_token(sub)}"))

    _assert_headers(client.get("/archive/alliance-digest"))
    web = client.get(make_sent_issue())
    assert web.status_code == 200
    # The web version is email HTML (inline styles): a policy of its own, still no framing.
    _assert_headers(web, strict=False)
    assert "script-src" not in web.headers["content-security-policy"] or \
        "'none'" in web.headers["content-security-policy"]


def test_api_answers_carry_nosniff(client, newsletter):
    r = client.get("/api/v1/subscribers")
    assert r.status_code == 401
    assert r.headers["x-content-type-options"] == "nosniff"
