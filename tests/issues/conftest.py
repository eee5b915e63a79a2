"""Factories for the issue tests: the sample issue as data, issues in the database."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from issuedata import SAMPLE


@pytest.fixture(scope="session")
def _sample_data() -> dict[str, Any]:
    return yaml.safe_load(SAMPLE.read_text())


@pytest.fixture
def sample_data(_sample_data: dict[str, Any]) -> dict[str, Any]:
    """The sample issue document (a fresh copy to change)."""
    return copy.deepcopy(_sample_data)


@pytest.fixture
def newsletter_info() -> Any:
    from app.issues.render import NewsletterInfo

    return NewsletterInfo(
        slug="alliance-digest", name="Alliance Digest", from_name="Alliance Digest",
        from_email="digest@riverside-water.example.org",
        reply_to="editors@riverside-water.example.org",
        footer="You receive the Alliance Digest because you signed up. "
               "[About us](https://riverside-water.example.org/about).",
        postal_address="Riverside Water Alliance, 12 Weir Lane, Millbrook 40112",
    )


@pytest.fixture
def make_issue(db: Any, newsletter: Any) -> Callable[..., Any]:
    """Create a draft issue of the sample newsletter; keyword arguments override the sample."""
    from app.issues import service

    def make(**fields: Any) -> Any:
        data = {"newsletter": "alliance-digest",
                "stories": [{"headline": "A story", "body": "Some text."}]}
        data.update(fields)
        issue = service.create(db, data)
        db.commit()
        return issue

    return make


@pytest.fixture
def mark_sent(db: Any) -> Callable[..., Any]:
    """Move an issue to `sent` as the sending pipeline would."""
    from app.issues import service

    def send(issue: Any, at: datetime | None = None) -> Any:
        service.set_status(db, issue, "sending")
        service.set_status(db, issue, "sent", at=at or datetime.now(UTC))
        db.commit()
        return issue

    return send
