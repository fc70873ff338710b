"""Logging set-up, with a last line of defence against secrets and report contents in log
output."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType

_SECRET = re.compile(r"\b(xox[abposre](?:\.xox[abposr])?-|xapp-)[A-Za-z0-9-]+")
_MASK = "***"
_ROW_VALUES = re.compile(
    r"(Failing row contains |Key \([^)\n]*\)=)\(.*?(?=\n\[SQL: |\n\nThe above exception|\n\nDuring handling|\Z)",
    re.DOTALL,
)
"""PostgreSQL's English DETAIL of a failing row or a duplicate key, for text that reaches a
log without its exception (then `database_details` cannot find it): masked up to where
the error's message ends."""


def database_details(error: BaseException | None) -> list[str]:
    """The DETAIL PostgreSQL gave with each database error in `error`'s chain: the whole
    failing row of a NOT NULL or CHECK violation, a duplicate key's values. They hold report
    texts, customers' contacts, reporters, in the server's language, and nothing an
    operator needs that the error's first line and its SQL do not say."""
    details: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        for candidate in (error, getattr(error, "orig", None)):
            detail = getattr(getattr(candidate, "diag", None), "message_detail", None)
            if detail:
                details.append(str(detail))
        error = error.__cause__ or error.__context__
    return details


def without_database_details(text: str, *errors: BaseException | None) -> str:
    """`text` (a database error, or a traceback or log line holding one) with the DETAIL of
    each of `errors` masked wherever it appears, and the rows PostgreSQL quotes in English
    masked too. (Statement parameters never get there: `feedbot.db` hides them.)"""
    details = sorted({d for error in errors for d in database_details(error)}, key=len)
    for detail in reversed(details):  # longest first: one may contain another
        text = text.replace(detail, _MASK)
    return _ROW_VALUES.sub(rf"\1({_MASK})", text)


class RedactSecrets(logging.Filter):
    """Masks Slack tokens, and the details of database errors (`without_database_details`),
    wherever they would appear in a record: message, arguments, traceback.

    Tokens are recognised by their prefix; `secrets` adds literal values (the signing secret
    is 32 hex digits, which no pattern can tell from an ordinary hash). Installed on the
    handler, so records propagated from any logger pass through it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self._literals = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str, *errors: BaseException | None) -> str:
        # The pattern first, so a token keeps its kind (`xoxb-***`) for whoever reads the log.
        text = without_database_details(_SECRET.sub(rf"\1{_MASK}", text), *errors)
        for literal in self._literals:
            text = text.replace(literal, _MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        # The exceptions a record carries, logged or among its arguments, say what their
        # database details are, wherever those were written into the record.
        errors = [record.exc_info[1]] if record.exc_info else []
        if isinstance(record.args, tuple):
            errors += [arg for arg in record.args if isinstance(arg, BaseException)]
        message = record.getMessage()
        redacted = self.redact(message, *errors)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            # Formatter.format() uses exc_text when set: format the traceback once, redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text, *errors)
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
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    """An error nothing caught ends in the log, not on the terminal as Python prints it: the
    handler's filter masks its secrets and database details (a command's duplicate key, a
    failing row), and log shippers read it as one record."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("feedbot").critical("stopped by an error", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    """As `_log_uncaught`, for an error that ended a thread (Python ignores `SystemExit`)."""
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "a thread"
    logging.getLogger("feedbot").error(
        "%s stopped by an error",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
