"""`feedbot digest preview|send` and `feedbot demo`.

`preview` prints what a digest would say (text, Block Kit JSON, a Block Kit Builder link)
without sending anything. `send` sends now and refuses a second send of the same week to
the same channel unless `--force`; it is safe while the bot runs (the run row decides).
`demo` needs neither Slack nor DATABASE_URL: it fills a separate SQLite file with simulated
weeks and prints the leaders' digest of the last one.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from feedbot import simulated_weeks as demo
from feedbot.commands import command_engine
from feedbot.core import config as runtime_config
from feedbot.core.config import RuntimeConfig
from feedbot.core.digest import DigestChannel, DigestKind, Schedule, parse_period
from feedbot.db import make_engine, session_scope, upgrade
from feedbot.errors import Conflict, InvalidValue
from feedbot.settings import Settings, get_settings, is_placeholder

DEMO_APPLICATION_ID = 0x46424430
"""Written into the demo database's header (`PRAGMA application_id`, "FBD0"), so a rerun
replaces its own demo database and never another file given by mistake."""


def register(commands: Any) -> None:
    """Add `digest preview|send` and `demo` to the `feedbot` parser."""
    group = commands.add_parser("digest", help="weekly digests: preview or send one now")
    subcommands = group.add_subparsers(dest="digest_command", required=True)
    preview = subcommands.add_parser(
        "preview", help="print a digest as text and Block Kit JSON, send nothing"
    )
    send = subcommands.add_parser("send", help="send a digest now (once per channel and week)")
    for command in (preview, send):
        command.add_argument("--channel", help="a digest channel ID (default: every one)")
        command.add_argument(
            "--week", help="ISO week like 2026-W47 (default: the last one that is due)"
        )
    send.add_argument("--force", action="store_true", help="send again even if already sent")
    preview.set_defaults(handler=cmd_preview)
    send.set_defaults(handler=cmd_send)

    demo_command = commands.add_parser(
        "demo", help="simulate weeks of reports in a separate SQLite file and print a digest"
    )
    demo_command.add_argument(
        "--database", type=Path, default=Path("feedbot-demo.db"), help="demo SQLite file"
    )
    demo_command.add_argument(
        "--chart", type=Path, default=Path("feedbot-demo-chart.png"), help="chart PNG to write"
    )
    demo_command.add_argument("--language", choices=("en", "de"), default="en")
    demo_command.add_argument("--weeks", type=int, default=10, help="weeks to simulate")
    demo_command.set_defaults(handler=cmd_demo)


def _setup() -> tuple[Settings, Engine, RuntimeConfig]:
    settings = get_settings()
    engine = command_engine(settings)
    with Session(engine) as session:
        config = runtime_config.load_config(
            session,
            bootstrap_admins=tuple(settings.feedbot_admins),
            default_timezone=settings.feedbot_timezone,
        )
    return settings, engine, config


def _has_token(settings: Settings) -> bool:
    return not is_placeholder(settings.slack_bot_token.get_secret_value())


def _link_base(settings: Settings) -> str | None:
    if not _has_token(settings):
        return None
    from feedbot.slack.client import make_interactive_client
    from feedbot.slack.features.digest import workspace_url

    return workspace_url(make_interactive_client(settings))


def _period(config: RuntimeConfig, week: str | None) -> str:
    if week:
        return parse_period(week)
    schedule = Schedule.parse(config.digest_schedule, config.zone)
    return schedule.due_period(datetime.now(UTC))


def cmd_preview(args: argparse.Namespace) -> int:
    from feedbot.slack.features.digest import compose, targets_for
    from feedbot.slack.views.digest import builder_url, plain_text

    settings, engine, config = _setup()
    targets = targets_for(config, args.channel) or [
        DigestChannel(
            DigestKind.LEADERSHIP,
            "",
            Schedule.parse(config.digest_schedule, config.zone),
            config.language,
        )
    ]
    period = _period(config, args.week)
    link_base = _link_base(settings)
    for target in targets:
        with Session(engine) as session:
            message = compose(
                session,
                kind=target.kind,
                period=period,
                schedule=target.schedule,
                locale=target.locale,
                now=datetime.now(UTC),
                link_base=link_base,
                files=False,
                confidential=target.confidential,
                covers=target.covers,
                routes=target.routes,
            ).message
        where = target.channel or "no leadership channel configured yet"
        print(f"# {target.kind} digest of {period} for {where}\n")
        print(plain_text(message))
        print("## Block Kit JSON\n")
        print(json.dumps(message.to_payload(), indent=2, ensure_ascii=False))
        print("\n## Open it in Block Kit Builder\n")
        print(builder_url(message) + "\n")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from feedbot.core.digest import already_sent
    from feedbot.slack.features.digest import send_digest, targets_for

    settings, engine, config = _setup()
    targets = targets_for(config, args.channel)
    if not targets:
        raise InvalidValue(
            "no digest channel is configured; set one with "
            "`feedbot config set leadership_channel C0123ABCD`"
        )
    period = _period(config, args.week)
    if not args.force:
        with Session(engine) as session:
            done = [
                f"{target.kind} to {target.channel}"
                for target in targets
                if already_sent(session, kind=target.kind, channel=target.channel, period=period)
            ]
        if done:
            raise Conflict(
                f"the digest of {period} was already sent ({'; '.join(done)}); "
                "use --force to send it again"
            )
    link_base = _link_base(settings)
    for target in targets:
        send_digest(
            engine,
            target=target,
            period=period,
            now=datetime.now(UTC),
            link_base=link_base,
            force=args.force,
        )
        print(f"queued the {target.kind} digest of {period} for {target.channel}")
    if _has_token(settings):
        from feedbot.slack.client import make_web_client
        from feedbot.slack.deps import Deps
        from feedbot.slack.work import command_sender

        deps = Deps(settings=settings, engine=engine, client=make_web_client(settings))
        command_sender(deps).drain()
        print("delivered to Slack (see `feedbot outbox` for anything Slack refused)")
    else:
        print("SLACK_BOT_TOKEN is not set here: the running bot delivers it")
    return 0


def _fresh_demo_database(path: Path) -> Engine:
    """A new, migrated SQLite file at `path`, replacing an earlier demo database only."""
    if path.exists():
        with sqlite3.connect(path) as connection:
            try:
                application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            except sqlite3.DatabaseError:
                application_id = None
        if application_id != DEMO_APPLICATION_ID:
            raise InvalidValue(
                f"{path} exists and is not a feedbot demo database; "
                "choose another file with --database"
            )
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql(f"PRAGMA application_id = {DEMO_APPLICATION_ID}")
    upgrade(engine)
    return engine


def cmd_demo(args: argparse.Namespace) -> int:
    from feedbot.core.digest import build_digest, build_you_said_we_did
    from feedbot.slack.views import digest as views
    from feedbot.slack.views.chart import render_chart

    if not 2 <= args.weeks <= 52:
        raise InvalidValue("--weeks must be between 2 and 52")
    engine = _fresh_demo_database(args.database)
    now = datetime.now(UTC)
    config = RuntimeConfig(leaders=list(demo.LEADERS), language=args.language)
    with session_scope(engine) as session:
        for key, value in (("leaders", ",".join(demo.LEADERS)), ("language", args.language)):
            runtime_config.set_value(session, key=key, raw=value, actor="demo", now=now)
        summary = demo.populate(session, config=config, now=now, weeks=args.weeks)
    with Session(engine) as session:
        digest = build_digest(session, period=summary.last_period, zone=config.zone, now=now)
        post = build_you_said_we_did(session, period=summary.last_period, zone=config.zone)
    engine.dispose()
    args.chart.write_bytes(render_chart(digest.trend, locale=args.language))
    leaders = views.build_digest_message(digest, locale=args.language, attachments=False)
    print(views.plain_text(leaders))
    print("-" * 78 + "\n")
    print(views.plain_text(views.build_you_said_we_did(post, locale=args.language)))
    print(f"Simulated {summary.reports} reports over {summary.weeks} weeks in {args.database}.")
    print(f"Trend chart: {args.chart.resolve()}")
    print(
        f"Try the other commands on it: DATABASE_URL=sqlite:///{args.database} "
        "feedbot digest preview"
    )
    return 0
