"""Logging set-up, with a last line of defence against secrets in log output."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_SECRET = re.compile(r"\b(xox[abposre](?:\.xox[abposr])?-|xapp-)[A-Za-z0-9-]+")
_MASK = "***"


class RedactSecrets(logging.Filter):
    """Masks Slack tokens wherever they would appear in a record: message, arguments, traceback.

    Tokens are recognised by their prefix; `secrets` adds literal values (the signing secret
    is 32 hex digits, which no pattern can tell from an ordinary hash). Installed on the
    handler, so records propagated from any logger pass through it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self._literals = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for literal in self._literals:
            text = text.replace(literal, _MASK)
        return _SECRET.sub(rf"\1{_MASK}", text)

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


def configure_logging(level: str, *, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("slack_bolt").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
