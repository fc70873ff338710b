"""Logging set-up, with a last line of defence against secrets in log output."""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(r"\b(xox[abposr]-|xapp-)[A-Za-z0-9-]+")


class RedactSecrets(logging.Filter):
    """Masks Slack tokens wherever they would appear in a record, arguments included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _SECRET.search(message):
            record.msg = _SECRET.sub(r"\1***", message)
            record.args = None
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("slack_bolt").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
