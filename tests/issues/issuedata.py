"""Shared data for the issue tests: the sample document and the base URL the tests run on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "alliance-digest-2.22.yaml"
BASE = "https://news.example.org"


def content_from(data: dict[str, Any]) -> Any:
    """An IssueContent from a document, validated as the service does."""
    from app.issues.schemas import IssueContent, IssueDocument

    document = IssueDocument.model_validate(data, context={"base_url": BASE})
    return IssueContent.model_validate(document.model_dump(exclude={"newsletter"}))
