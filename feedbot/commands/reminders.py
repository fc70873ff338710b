"""`feedbot reminders run [--dry-run]`: the reminder scan, on demand.

The running bot scans every minute by itself; this is for operators who want to see what is
due now (`--dry-run` sends nothing), or to send it at once. Sending is safe while the bot
runs: each reminder is claimed in the database, so it goes out once whoever scans first.
"""

from __future__ import annotations

import argparse
from typing import Any

from feedbot.commands import command_engine
from feedbot.core.reminders import Due, GroupDue, Kind
from feedbot.errors import ConfigurationError
from feedbot.settings import SECRET_SOURCES, get_settings


def register(commands: Any) -> None:
    """Add this feature's subcommands to the `feedbot` parser."""
    group = commands.add_parser("reminders", help="follow-up reminders and escalations")
    subcommands = group.add_subparsers(dest="reminders_command", required=True)
    run = subcommands.add_parser(
        "run", help="send the reminders and escalations due now (the bot does it every minute)"
    )
    run.add_argument("--dry-run", action="store_true", help="only show what is due")
    run.set_defaults(handler=cmd_run)


def describe(due: Due | GroupDue) -> str:
    """One line per reminder, for people reading a terminal."""
    if isinstance(due, GroupDue):
        where = "the incident card's thread"
        return (
            f"{due.reference:<9} "
            + (
                f"reminder {due.number} in {where}"
                if due.kind == Kind.ACK
                else f"escalation: incident not acknowledged ({due.number} reminders sent)"
            )
            + f" (due {due.due_at:%Y-%m-%d %H:%M} UTC)"
        )
    what = {
        Kind.ACK: f"reminder {due.number} in the card's thread",
        Kind.FOLLOW_UP: f"follow-up reminder {due.number} to {due.recipient}",
        Kind.CALLBACK: f"call-back reminder {due.number} to {due.recipient}",
        Kind.ACK_ESCALATION: f"escalation: not acknowledged ({due.number} reminders sent)",
        Kind.FOLLOW_UP_ESCALATION: f"escalation: follow-up overdue ({due.number} reminders sent)",
    }[due.kind]
    return f"{due.reference:<9} {what} (due {due.due_at:%Y-%m-%d %H:%M} UTC)"


def cmd_run(args: argparse.Namespace) -> int:
    from feedbot.slack.client import make_web_client
    from feedbot.slack.deps import Deps
    from feedbot.slack.features.reminders import send_due
    from feedbot.slack.work import command_sender

    settings = get_settings()
    if not settings.slack_bot_token.get_secret_value():
        # Without it, people's timezones cannot be looked up and nothing can be delivered.
        raise ConfigurationError(
            f"SLACK_BOT_TOKEN is not set.\n  SLACK_BOT_TOKEN: {SECRET_SOURCES['SLACK_BOT_TOKEN']}"
        )
    engine = command_engine(settings)
    deps = Deps(settings=settings, engine=engine, client=make_web_client(settings))
    due = send_due(deps, dry_run=args.dry_run)
    for item in due:
        print(describe(item))
    if args.dry_run:
        print(f"{len(due)} due now; nothing sent (dry run)")
        return 0
    command_sender(deps).drain()
    print(f"sent {len(due)}")
    return 0
