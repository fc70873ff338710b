"""What a feedbot process does besides answering Slack: its inbox workers, the outbox and
webhook senders, and the name its claims carry (`feedbot.core.liveness`).

`feedbot run` does this work in its inbox workers' process (`feedbot.worker_process`), or
itself with `INBOX_WORKERS=thread`.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedbot.core.identity import Identities
from feedbot.core.liveness import Liveness
from feedbot.errors import ConfigurationError
from feedbot.slack.client import make_sender_client
from feedbot.slack.deps import Deps
from feedbot.slack.inbox import Inbox
from feedbot.slack.outbox import OutboxSender
from feedbot.slack.webhook_sender import WebhookSender

THREADS_ON_POSTGRESQL = 4
"""Inbox workers of a process that only works (`feedbot inbox-worker`) on PostgreSQL. A
worker there spends most of its time waiting for the server's answers, and no requests
wait for the interpreter in that process. (SQLite has one writer: one worker, which is also
the one that moves requests from the arrivals file into the inbox.)"""


@dataclass
class Work:
    inbox: Inbox
    sender: OutboxSender
    hooks: WebhookSender
    liveness: Liveness

    @classmethod
    def assemble(cls, deps: Deps, *, only_work: bool = False) -> Work:
        """The parts, wired so that whatever `deps` commits wakes the senders. `only_work`:
        this process answers no requests, so on PostgreSQL several workers run."""
        liveness = Liveness(deps.engine)
        liveness.start()
        sender = OutboxSender(
            deps.engine,
            make_sender_client(deps.settings),
            access=deps.access,
            identities=deps.identities,
            owner=liveness.owner,
            config=deps.config_in,
        )
        threads = 1
        if only_work and deps.engine.dialect.name == "postgresql":
            threads = THREADS_ON_POSTGRESQL
        inbox = Inbox(deps, liveness=liveness, threads=threads, watch_depth=not only_work)
        work = cls(inbox, sender, WebhookSender(deps, owner=liveness.owner), liveness)
        deps.on_commit = work.wake_senders
        return work

    def wake_senders(self) -> None:
        self.sender.wake()
        self.hooks.wake()

    def start(self) -> None:
        """The inbox first: it takes over what a dead process left."""
        self.inbox.start()
        self.sender.start()
        self.hooks.start()

    def stop(self) -> None:
        self.inbox.stop()
        self.sender.stop()
        self.hooks.stop()
        self.liveness.stop()


def command_sender(deps: Deps) -> OutboxSender:
    """A sender for a command that delivers what it queued (`feedbot digest send`,
    `feedbot reminders run`). It takes whatever else is due too, so it opens seals and draws
    Homes as the bot's own does: one without the key would give up a direct message to
    someone who acted anonymously as undeliverable."""
    identities: Identities | None
    try:
        identities = deps.identities
    except ConfigurationError:  # no key: nothing was sealed with one
        identities = None
    return OutboxSender(
        deps.engine,
        make_sender_client(deps.settings),
        access=deps.access,
        identities=identities,
        config=deps.config_in,
    )
