"""`missive issue send` as an editor uses it from a shell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.sending.models import Send
from tests.cli.test_cli_accounts import _one_line_error, missive
from tests.sending.conftest import add_readers, issue  # noqa: F401 (fixture)


def test_send_now_and_again(test_env, issue, db):  # noqa: F811
    add_readers(3)
    result = missive("issue", "send", str(issue), env=test_env)
    assert result.returncode == 0, result.stderr
    assert "starts now" in result.stdout
    assert "already has a send" in _one_line_error(
        missive("issue", "send", str(issue), env=test_env))


def test_send_at_a_time(test_env, issue, db):  # noqa: F811
    at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    result = missive("issue", "send", str(issue), "--at", at.isoformat(), env=test_env)
    assert result.returncode == 0, result.stderr
    assert "scheduled for" in result.stdout
    assert db.scalars(select(Send.scheduled_at)).one() == at


def test_bad_send_arguments(test_env, issue):  # noqa: F811
    assert "time zone" in _one_line_error(
        missive("issue", "send", str(issue), "--at", "2030-01-01T10:00", env=test_env))
    assert "not an ISO time" in _one_line_error(
        missive("issue", "send", str(issue), "--at", "soon", env=test_env))
    assert "no issue" in _one_line_error(missive("issue", "send", "99999", env=test_env)).lower()
    assert "invalid email" in _one_line_error(
        missive("issue", "send", str(issue), "--test-to", "nobody", env=test_env))


def test_test_send(test_env, issue, worker, inbox):  # noqa: F811
    result = missive("issue", "send", str(issue), "--test-to", "ed@example.org", env=test_env)
    assert result.returncode == 0, result.stderr
    [message] = inbox.wait_for(1)
    assert message["To"].addresses[0].addr_spec == "ed@example.org"
