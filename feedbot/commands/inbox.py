"""`feedbot inbox`: requests from Slack acked but not handled yet, and those set aside."""

from __future__ import annotations

import argparse
from typing import Any

from sqlmodel import Session

from feedbot.core import inbox
from feedbot.db import make_engine
from feedbot.models import utcnow
from feedbot.settings import get_settings


def register(commands: Any) -> None:
    command = commands.add_parser(
        "inbox", help="requests from Slack waiting to be handled, and any that failed"
    )
    command.add_argument("--limit", type=int, default=20, help="failed requests to list")
    command.set_defaults(handler=cmd_inbox)


def cmd_inbox(args: argparse.Namespace) -> int:
    engine = make_engine(get_settings().database_url)
    try:
        with Session(engine) as session:
            depth = inbox.depth(session, now=utcnow())
            print(
                f"waiting: {depth.pending}, oldest waiting {depth.oldest_seconds:.1f} s, "
                f"failed: {depth.failed}"
            )
            if depth.oldest_seconds > inbox.LATE_AFTER.total_seconds():
                print(
                    "the bot is falling behind: is it running? Every process handles the "
                    "inbox; more replicas (PostgreSQL) handle more."
                )
            for entry in inbox.failures(session, limit=args.limit):
                print(
                    f"failed #{entry.id} {entry.kind} received {entry.received_at:%Y-%m-%d %H:%M:%S}"
                    f" UTC after {entry.attempts} attempts: {entry.last_error}"
                )
    finally:
        engine.dispose()
    return 0
