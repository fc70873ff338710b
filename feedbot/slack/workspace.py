"""The workspace's web address, for links to messages.

Events carry no workspace domain (only slash commands and interactions do), so links to the
message a report came from are built from the address `auth.test` gives: the same one for
every message, asked once per process. Nothing on the request path ever waits for it: until
it is known, links are left out (the report keeps its channel and ts).
"""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient

log = logging.getLogger(__name__)


class Workspace:
    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._url: str | None = None
        self._lock = threading.Lock()
        self._fetching = False

    def remember(self, url: str | None) -> None:
        """Take the address from an `auth.test` made elsewhere (the start-up check)."""
        if url:
            self._url = url if url.endswith("/") else url + "/"

    def url(self) -> str | None:
        """The address if known; otherwise None now, and it is asked for in the background."""
        if self._url is None:
            with self._lock:
                start, self._fetching = not self._fetching, True
            if start:
                threading.Thread(target=self._fetch_once, name="workspace", daemon=True).start()
        return self._url

    def fetch(self) -> str | None:
        """The address, asking Slack now if needed (jobs and start-up, never a request)."""
        if self._url is None:
            try:
                self.remember(self.client.auth_test().get("url"))
            except Exception as exc:
                log.warning("the workspace's address is unknown (no links yet): %s", exc)
        return self._url

    def _fetch_once(self) -> None:
        try:
            self.fetch()
        finally:
            with self._lock:
                self._fetching = False

    def message_link(self, channel: str | None, ts: str | None) -> str | None:
        """`https://acme.slack.com/archives/C…/p<ts without the dot>`, or None."""
        return message_link(self.url(), channel, ts)


def message_link(base: str | None, channel: str | None, ts: str | None) -> str | None:
    if not (base and channel and ts):
        return None
    return f"{base.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"
