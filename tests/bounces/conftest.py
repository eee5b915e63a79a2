"""Bounce tests send real issues first: they share the sending tests' fixtures."""

from tests.sending.conftest import beat, issue, sink, workers

__all__ = ["beat", "issue", "sink", "workers"]
