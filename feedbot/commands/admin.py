"""`feedbot audit`, `feedbot export` and `feedbot forget-user`: administration on the server."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from feedbot.commands import command_engine
from feedbot.core import privacy
from feedbot.core.config import load_config
from feedbot.core.config_values import USER_ID
from feedbot.core.forget import forget_user
from feedbot.db import session_scope
from feedbot.errors import InvalidValue
from feedbot.models import Report
from feedbot.settings import get_settings


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="latest settings and role changes")
    audit.add_argument("--limit", type=int, default=20)
    audit.set_defaults(handler=cmd_audit)

    export = commands.add_parser("export", help="reports for analysis (contacts masked)")
    export.add_argument("--since", required=True, help="YYYY-MM-DD")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--output", help="file to write (default: standard output)")
    export.set_defaults(handler=cmd_export)

    forget = commands.add_parser("forget-user", help="remove a person's identity everywhere")
    forget.add_argument("user_id")
    forget.set_defaults(handler=cmd_forget_user)


def _engine() -> Any:
    return command_engine(get_settings())


def cmd_audit(args: argparse.Namespace) -> int:
    with Session(_engine()) as session:
        entries = privacy.audit_log(session, limit=args.limit)
    if not entries:
        print("no changes recorded yet")
    for entry in entries:
        print(
            f"{entry.at:%Y-%m-%d %H:%M} UTC  {entry.actor or '-':<12} {entry.key}: "
            f"{entry.old_value or '-'} → {entry.new_value or '-'}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        since = datetime.strptime(args.since, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidValue(f"--since {args.since!r} is not a date like 2026-01-31") from None
    with Session(_engine()) as session:
        rows = privacy.export_rows(session, since=since)
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "json":
            json.dump(rows, out, ensure_ascii=False, indent=1)
            out.write("\n")
        else:
            writer = csv.DictWriter(out, fieldnames=privacy.EXPORT_FIELDS)
            writer.writeheader()
            writer.writerows(
                {key: privacy.spreadsheet_safe(value) for key, value in row.items()} for row in rows
            )
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"exported {len(rows)} reports to {args.output}", file=sys.stderr)
    return 0


def cmd_forget_user(args: argparse.Namespace) -> int:
    from feedbot.slack import delivery
    from feedbot.slack.files import queue_deletions
    from feedbot.slack.i18n import t

    if not USER_ID.match(args.user_id):
        raise InvalidValue(f"{args.user_id!r} is not a Slack user ID (like U012AB3CD)")
    settings = get_settings()
    identities = settings.identities()
    engine = _engine()
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        config = load_config(
            session,
            bootstrap_admins=tuple(settings.feedbot_admins),
            default_timezone=settings.feedbot_timezone,
        )
        forgotten = forget_user(
            session,
            user_id=args.user_id,
            identities=identities,
            replacement=t(config.language, "forgotten.person"),
            now=now,
        )
        config = load_config(  # without them in any role
            session,
            bootstrap_admins=tuple(settings.feedbot_admins),
            default_timezone=settings.feedbot_timezone,
        )
        for report_id in forgotten.report_ids:
            report = session.get(Report, report_id)
            if report is not None:
                delivery.refresh_card(session, report=report, config=config, now=now)
        for message_id in forgotten.messages_to_edit:
            delivery.rewrite_posted(session, message_id=message_id, now=now)
        queue_deletions(session, forgotten.files_to_delete, now=now)
    print(f"{args.user_id}: {forgotten.describe()}")
    if forgotten.report_ids or forgotten.messages_to_edit or forgotten.files_to_delete:
        print("The running bot's outbox edits their cards and messages in Slack.")
    return 0
