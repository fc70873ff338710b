"""This process's access to Slack: paused while Slack refuses its bot token, and resumed by
itself once a token works again (see `feedbot.core.access` for the shared record).

Slack says an app lost its token in three ways: the `app_uninstalled` and `tokens_revoked`
events, and a Web API call answered `token_revoked`, `invalid_auth` and the like. Each pauses
sending in every process using that token. While paused, each process asks Slack every
`RETRY_EVERY` seconds whether its token works, reading the token afresh from the environment
and `.env`: reinstall the app, put its new bot token in place, and feedbot resumes, sending
everything it kept, in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine

from feedbot.core import access
from feedbot.core.access import Revocation
from feedbot.db import session_scope

log = logging.getLogger(__name__)

ACCESS_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "team_access_not_granted",
    }
)
"""Slack's answers to a bot token it no longer accepts, whatever the call."""

CACHE_FOR = 2.0
"""Seconds a process trusts its copy of the shared record."""
RETRY_EVERY = 30.0
"""Seconds between two checks of a refused token (or of a new one) while paused."""


class SlackAccess:
    """Whether this process may send, for the token its `clients` carry."""

    def __init__(
        self,
        engine: Engine,
        clients: Iterable[WebClient],
        *,
        clock: Callable[[], datetime],
        load_token: Callable[[], str] | None = None,
        on_restored: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.on_restored = on_restored
        """Called once sending may resume: the senders go at once, not at their next look."""
        self.clients = list(clients)
        self.clock = clock
        self.load_token = load_token or (lambda: self.token)
        self._cached: tuple[Revocation | None, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def token(self) -> str:
        return str(self.clients[0].token or "")

    def add_client(self, client: WebClient) -> None:
        """Another client that must carry the same token (a new token reaches them all)."""
        client.token = self.token
        self.clients.append(client)

    def revocation(self) -> Revocation | None:
        """Why this process's token no longer works, or None while it does."""
        with self._lock:
            cached = self._cached
        if cached is not None and time.monotonic() - cached[1] < CACHE_FOR:
            return cached[0]
        with session_scope(self.engine) as session:
            found = access.revocation(session, token=self.token)
        with self._lock:
            self._cached = (found, time.monotonic())
        return found

    def paused(self) -> bool:
        return self.revocation() is not None

    def revoked(self, reason: str) -> None:
        """Slack no longer accepts this process's token: stop sending, everywhere."""
        with session_scope(self.engine) as session:
            access.revoke(session, token=self.token, reason=reason, now=self.clock())
        with self._lock:
            self._cached = None
        log.error(
            "Slack no longer accepts the bot token (%s): nothing is sent to Slack until the "
            "app is reinstalled and SLACK_BOT_TOKEN holds its new bot token. Reports are "
            "still taken, and every message waits in the outbox.",
            reason,
        )

    def check(self) -> bool:
        """Ask Slack whether the configured token (read afresh) works; if it does, use it and
        resume. True when this process may send."""
        if not self.paused():
            return True
        token = self.load_token()
        probe = WebClient(token=token, base_url=self.clients[0].base_url, timeout=10)
        try:
            probe.auth_test()
        except SlackApiError as exc:
            log.warning("the bot token is still refused: %s", exc.response.get("error"))
            return False
        except Exception as exc:
            log.warning("cannot reach Slack to check the bot token: %s", type(exc).__name__)
            return False
        old = self.token
        for client in self.clients:
            client.token = token
        with session_scope(self.engine) as session:
            access.restore(session, token=token)
        with self._lock:
            self._cached = None
        log.info(
            "Slack accepts the bot token%s again: sending what waited",
            "" if token == old else " (a new one)",
        )
        self.on_restored()
        return True

    def recheck(self) -> bool:
        """Another process found the token accepted again: look now, not once this process's
        copy of the shared record runs out, and let the senders go at once. True when this
        process may send."""
        with self._lock:
            self._cached = None
        if self.paused():
            return self.check()  # a token of its own, refused still, or replaced by a new one
        self.on_restored()
        return True

    def recheck_soon(self) -> None:
        """`recheck` on a thread of its own: it may wait for Slack up to its timeout, and the
        caller (the thread that hears the parent process) must not."""

        def run() -> None:
            try:
                self.recheck()
            except Exception:
                log.exception("checking the bot token failed")

        threading.Thread(target=run, name="slack-access-recheck", daemon=True).start()

    def watch(self) -> None:
        """Check every `RETRY_EVERY` seconds while paused, on a daemon thread."""

        def run() -> None:
            while not self._stop.wait(RETRY_EVERY):
                try:
                    self.check()
                except Exception:
                    log.exception("checking the bot token failed")

        threading.Thread(target=run, name="slack-access", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
