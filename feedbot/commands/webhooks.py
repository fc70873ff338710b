"""`feedbot webhooks add|list|remove|test`: where report events go (ticket systems)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from sqlmodel import Session

from feedbot.commands import command_engine
from feedbot.core import webhooks
from feedbot.db import session_scope
from feedbot.models import utcnow
from feedbot.settings import get_settings


def register(commands: Any) -> None:
    hooks = commands.add_parser(
        "webhooks", help="send report events to ticket systems (signed JSON)"
    ).add_subparsers(dest="webhooks_command", required=True)
    add = hooks.add_parser("add", help="add a receiver; prints its secret once")
    add.add_argument("url")
    add.add_argument(
        "--events",
        default="all",
        help=f"comma-separated, from: {', '.join(webhooks.EVENTS)} (default: all)",
    )
    add.set_defaults(handler=cmd_add)
    hooks.add_parser("list", help="every receiver, its events and whether it works").set_defaults(
        handler=cmd_list
    )
    remove = hooks.add_parser(
        "remove", help="remove a receiver (events waiting for it are dropped)"
    )
    remove.add_argument("id", type=int)
    remove.set_defaults(handler=cmd_remove)
    test = hooks.add_parser("test", help="send a signed `ping` now and show the answer")
    test.add_argument("id", type=int)
    test.set_defaults(handler=cmd_test)


def _engine() -> Any:
    return command_engine(get_settings())


def cmd_add(args: argparse.Namespace) -> int:
    identities = get_settings().identities()
    with session_scope(_engine()) as session:
        added = webhooks.add(
            session,
            url=args.url,
            events=args.events,
            identities=identities,
            actor="cli",
            now=utcnow(),
        )
        webhook = added.webhook
        print(f"webhook {webhook.id} → {webhook.url}")
        print(f"events: {webhook.events}")
    print(f"secret: {added.secret}")
    print("Keep the secret in the receiver: it is shown only now. It verifies what feedbot")
    print(f"sends ({webhooks.SIGNATURE_HEADER}) and signs calls back to feedbot.")
    return 0


def print_health(session: Session) -> None:
    for item in webhooks.health(session):
        print(webhooks.describe(item))


def cmd_list(args: argparse.Namespace) -> int:
    with Session(_engine()) as session:
        if not webhooks.all_webhooks(session):
            print("no webhooks; add one with `feedbot webhooks add URL --events ...`")
        print_health(session)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with session_scope(_engine()) as session:
        webhook = webhooks.remove(session, webhook_id=args.id, actor="cli", now=utcnow())
        print(f"removed webhook {args.id} ({webhook.url})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """A ping straight away, not through the outbox: its answer is what the admin wants."""
    identities = get_settings().identities()
    with Session(_engine()) as session:
        webhook = webhooks.get(session, args.id)
        secret = webhooks.secret_of(webhook, identities)
        url = webhook.url
    if secret is None:
        print(f"webhook {args.id}: its secret was sealed with another FEEDBOT_SECRET_KEY")
        return 1
    body = webhooks.build_body(event=webhooks.PING, report=None, now=utcnow()).encode()
    headers = webhooks.signed_headers(secret, body, timestamp=int(time.time()))
    headers[webhooks.WEBHOOK_HEADER] = str(args.id)
    headers["X-Feedbot-Event"] = webhooks.PING
    attempt = webhooks.post(url, body, headers, timeout=10.0)
    if attempt.ok:
        print(f"webhook {args.id}: {url} answered {attempt.status}")
        return 0
    print(f"webhook {args.id}: {url} failed: {attempt.error}")
    return 1
