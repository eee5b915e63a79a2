"""One error type for the rules of the service; one handler turns it into `{"detail": …}`."""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """The configuration cannot be used; the message says in one line what to change."""


class AppError(Exception):
    """A refusal a user can act on. `detail` is shown to them as it is."""

    status_code = 400

    def __init__(self, detail: Any, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class Invalid(AppError):
    status_code = 422


class TooManyRequests(AppError):
    status_code = 429
