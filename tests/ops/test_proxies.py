"""The client address behind a reverse proxy: from X-Forwarded-For only when the proxy is
trusted (MISSIVE_TRUSTED_PROXIES); otherwise anyone could pick their own rate-limit bucket."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from app.subscribers.models import ConsentEvent, Subscriber
from tests.conftest import wait_until


def _sign_ups(server, count: int) -> list[int]:
    codes = []
    for i in range(count):
        r = httpx.post(f"{server.url}/subscribe/alliance-digest",
                       json={"email": f"proxied{i}@example.org"},
                       headers={"X-Forwarded-For": f"203.0.113.{i + 1}"})
        codes.append(r.status_code)
    return codes


def _ours(db):
    """The sign-up events of this test's addresses: not the worker's "confirmation-mailed"
    (no client address) should the suite's worker be running, nor another test's leftovers."""
    db.rollback()  # a fresh snapshot: the server commits in its own process
    return db.scalars(select(ConsentEvent).join(Subscriber).where(
        Subscriber.email.like("proxied%@example.org"),
        ConsentEvent.action == "signup")).all()


def _consent_ips(db) -> set[str | None]:
    return {event.ip for event in _ours(db)}


def _consent_count(db) -> int:
    return len(_ours(db))


def _wait_stored(server, predicate, what: str) -> None:
    """Wait for sign-ups the server stores after its answers; on a timeout, show its log."""
    try:
        wait_until(predicate, timeout=30, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; server log:\n" + "\n".join(server.lines()[-40:])) from None


def test_forwarded_for_is_ignored_from_an_untrusted_peer(serve, newsletter, db):
    server = serve(MISSIVE_SIGNUP_IP_PER_MINUTE="2")
    # Three "different" clients, all really 127.0.0.1: the third is over the limit.
    assert _sign_ups(server, 3) == [202, 202, 429]
    # Both accepted sign-ups are stored after their answers: wait for them, so none lands in
    # the next test's database.
    _wait_stored(server, lambda: _consent_count(db) == 2, "two sign-ups stored")
    assert _consent_ips(db) == {"127.0.0.1"}


def test_forwarded_for_is_believed_from_a_trusted_proxy(serve, newsletter, db):
    server = serve(MISSIVE_SIGNUP_IP_PER_MINUTE="2", MISSIVE_TRUSTED_PROXIES="127.0.0.0/8")
    assert _sign_ups(server, 3) == [202, 202, 202]
    # A sign-up is stored after its answer (the same time for a known and a new address).
    _wait_stored(server, lambda: len(_consent_ips(db)) == 3, "three sign-ups stored")
    assert _consent_ips(db) == {"203.0.113.1", "203.0.113.2", "203.0.113.3"}


def test_a_bad_trusted_proxies_setting_is_refused():
    from pydantic import ValidationError

    from app.config import Settings

    with pytest.raises(ValidationError, match="MISSIVE_TRUSTED_PROXIES.*proxy.local"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.local")
    assert Settings(trusted_proxies=" 10.0.0.0/8, ::1 ").proxy_networks == ["10.0.0.0/8", "::1"]
