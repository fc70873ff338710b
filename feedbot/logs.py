"""Logging set-up, with a last line of defence against secrets and report contents in log
output."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_SECRET = re.compile(r"\b(xox[abposre](?:\.xox[abposr])?-|xapp-)[A-Za-z0-9-]+")
_MASK = "***"
_ROW_VALUES = re.compile(
    r"(Failing row contains )\(.*?(?=\n\[SQL: |\n\nThe above exception|\n\nDuring handling|\Z)",
    re.DOTALL,
)
"""PostgreSQL's DETAIL of a failed insert or update (a NOT NULL or CHECK violation) lists the
whole row: a report's text, a customer's contact, who filed it. Masked up to where the
error's message ends (SQLAlchemy's `[SQL: …]`, or the traceback's next paragraph)."""


def without_row_values(text: str) -> str:
    """`text` (a database error, or a traceback holding one) without the row values
    PostgreSQL quotes in it. (Statement parameters never get there: `feedbot.db` hides
    them.)"""
    return _ROW_VALUES.sub(rf"\1({_MASK})", text)


class RedactSecrets(logging.Filter):
    """Masks Slack tokens, and the row values of database errors (`without_row_values`),
    wherever they would appear in a record: message, arguments, traceback.

    Tokens are recognised by their prefix; `secrets` adds literal values (the signing secret
    is 32 hex digits, which no pattern can tell from an ordinary hash). Installed on the
    handler, so records propagated from any logger pass through it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self._literals = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        # The pattern first, so a token keeps its kind (`xoxb-***`) for whoever reads the log.
        text = without_row_values(_SECRET.sub(rf"\1{_MASK}", text))
        for literal in self._literals:
            text = text.replace(literal, _MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            # Formatter.format() uses exc_text when set: format the traceback once, redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_CONTEXT: contextvars.ContextVar[str] = contextvars.ContextVar("feedbot_log_context", default="")


@contextmanager
def log_context(**kind: str) -> Iterator[str]:
    """Tag every log line written inside the block with an id (`request=…` or `job=…`), so
    the lines of one Slack request or one job run can be found together."""
    name, label = next(iter(kind.items()))
    tag = (
        f"{name}={label}-{uuid.uuid4().hex[:8]}"
        if name == "job"
        else f"{name}={uuid.uuid4().hex[:12]}"
    )
    token = _CONTEXT.set(tag)
    try:
        yield tag
    finally:
        _CONTEXT.reset(token)


class _AddContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        record.context = context
        record.context_tag = f" [{context}]" if context else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (LOG_FORMAT=json)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "context", "")
        if context:
            key, _, value = context.partition("=")
            entry[f"{key}_id"] = value
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    level: str, *, secrets: Iterable[str] = (), json_format: bool = False
) -> None:
    handler = logging.StreamHandler()
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s%(context_tag)s: %(message)s")
        )
    handler.addFilter(_AddContext())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("slack_bolt").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.WARNING
    )
