"""The project's own errors, shared by every layer. Each carries a message written for the person who must act on it.

`code` and `params` let the Slack layer show the same error in the reader's language
(`error.<code>` in the message catalogues); `str(error)` is the English fallback.
"""

from __future__ import annotations

from typing import Any


class FeedbotError(Exception):
    """Base class: `str(error)` is safe to show to the person who caused it."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.params = params or {}


class ConfigurationError(FeedbotError):
    """The process cannot start as configured (missing secret, bad URL)."""


class InvalidValue(FeedbotError):
    """A value given by a person is not acceptable; the message says what is expected."""


class NotAllowed(FeedbotError):
    """The person lacks the role this action needs."""


class NotFound(FeedbotError):
    """A referenced report or entry does not exist."""


class Conflict(FeedbotError):
    """The action does not fit the current state (e.g. resolving a resolved report)."""
