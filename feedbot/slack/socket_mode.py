"""Socket Mode: Slack's requests arrive over a WebSocket that feedbot opens, so the bot needs
no public URL.

That connection breaks now and then: Slack asks for a new one every few hours (a `disconnect`
message), and networks fail without a word. Either way feedbot must take requests again
within seconds, because Slack does not queue slash commands or button presses for a bot that
is away. Measured against the test bed's Socket Mode server (`tests/fakesocket.py`), seconds
from the fault until a slash command was answered again (the drop is a peer that goes silent
with the connection still up; "CPU" is the core a client burns meanwhile):

===============================  =====================  ===========  ============  ===========
client                           polite `disconnect`    close frame  FIN only      silent drop
===============================  =====================  ===========  ============  ===========
slack_sdk built-in, ping 10 s    3.1, its ack took 3.1  8.8          49, 48 s CPU  50
slack_sdk built-in, ping 1 s     3.1, its ack took 3.1  0.8          5, 4.8 s CPU  6
websocket-client, ping 10 s      0.5; 10 one time in 5  0.5          0.5           never
`FeedbotSocketModeClient`        0.3                    0.3          0.3           3.8 to 5.4
(websocket-client, ping 2 s)
===============================  =====================  ===========  ============  ===========

The built-in client reads the new connection only once its old read loop times out (3 s),
so the first request after every refresh misses Slack's 3-second deadline; and after a FIN
without a close frame it busy-loops on the dead socket until five pings have failed.
websocket-client waits in `select()` and hears at once whatever the network reports (close
frame, FIN, reset). slack_sdk's client for it has three flaws, which `FeedbotSocketModeClient`
mends:

- It never notices a network that silently stops delivering: websocket-client acts on
  missing pongs only when given a ping timeout, and slack_sdk gives none.
  `LivenessWatchdog` supplies the check.
- On a refresh it closes the old socket from another thread. About one time in five (on
  loopback) the old connection's `select()` misses that close and sleeps out its full 10 s,
  and slack_sdk reads one connection at a time, so the new one waited that long too. Each
  connection now has a reader thread of its own.
- When a connection dies, two of its threads ask for a new one, and the second could
  replace the first's just after Slack sent a request over it (`is_connected`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.websocket_client import SocketModeClient

if TYPE_CHECKING:
    from slack_bolt import App
    from websocket import WebSocketApp

log = logging.getLogger(__name__)

PING_INTERVAL = 2.0
"""Seconds between pings to Slack; a few bytes each."""
PONG_TIMEOUT = 3.0
"""Seconds a ping may go unanswered before the connection counts as dead and is replaced.
A pong takes one network round trip; the margin spares a slow moment a needless reconnect.
A dead connection is replaced within about PING_INTERVAL + PONG_TIMEOUT + CHECK_INTERVAL
seconds plus one `apps.connections.open`."""
CHECK_INTERVAL = 0.5
HELLO_TIMEOUT = 10.0
"""Seconds `SocketMode.connect` waits for Slack's `hello` before starting anyway (the client
keeps trying in the background)."""


class LivenessWatchdog:
    """Ends a Socket Mode connection whose ping went unanswered for `pong_timeout` seconds,
    so that the client replaces it.

    A dead network leaves no close frame and no FIN, and TCP gives up on unacknowledged data
    only after about 15 minutes. Every `check_interval` seconds this thread reads the current
    connection's last ping and pong times (websocket-client's `WebSocketApp.last_ping_tm` and
    `last_pong_tm`), notes the first ping sent since the last pong, and once that ping has
    waited `pong_timeout` seconds calls `WebSocket.abort()`, websocket-client's way to wake
    a blocked reader. The connection then ends as after a FIN, and slack_sdk opens a new one.
    """

    def __init__(
        self,
        client: SocketModeClient,
        *,
        pong_timeout: float = PONG_TIMEOUT,
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        self.client = client
        self.pong_timeout = pong_timeout
        self.check_interval = check_interval
        self._unanswered: tuple[WebSocketApp, float, float] | None = None
        """(connection, its last pong, the first ping sent after that pong)."""
        self._stopped = threading.Event()
        self._starting = threading.Lock()
        self._started = False
        self._thread = threading.Thread(target=self._run, name="socket-mode-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching; later calls (one per reconnect, from several threads) do nothing."""
        with self._starting:
            if not self._started:
                self._started = True
                self._thread.start()

    def stop(self) -> None:
        with self._starting:
            self._started = True  # never start after a stop
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def check(self, now: float | None = None) -> bool:
        """Abort the current connection if its ping is overdue; True if it did."""
        session = self.client.current_session
        connection = session.sock if session is not None else None
        if session is None or connection is None or not connection.connected:
            self._unanswered = None
            return False
        sent, answered = session.last_ping_tm, session.last_pong_tm
        if not sent or answered >= sent:
            self._unanswered = None
            return False
        if self._unanswered is None or self._unanswered[:2] != (session, answered):
            self._unanswered = (session, answered, sent)
        waited = (now if now is not None else time.time()) - self._unanswered[2]
        if waited <= self.pong_timeout:
            return False
        log.warning("Slack has not answered a ping for %.1f s; reconnecting", waited)
        self._unanswered = None
        connection.abort()  # type: ignore[no-untyped-call]
        return True

    def _run(self) -> None:
        while not self._stopped.wait(self.check_interval):
            try:
                self.check()
            except Exception:  # a passing oddity must not end the watchdog
                log.exception("the Socket Mode watchdog failed to check the connection")


class FeedbotSocketModeClient(SocketModeClient):
    """slack_sdk's websocket-client Socket Mode client, with a `LivenessWatchdog` and a
    reader thread per connection (see the module's documentation)."""

    def __init__(self, *, pong_timeout: float = PONG_TIMEOUT, **kwargs: Any) -> None:
        self._reading: WebSocketApp | None = None  # before the session runner may look
        self._finished: WebSocketApp | None = None
        super().__init__(**kwargs)
        self.watchdog = LivenessWatchdog(self, pong_timeout=pong_timeout)

    def connect(self) -> None:
        super().connect()
        self.watchdog.start()

    def close(self) -> None:
        self.watchdog.stop()
        super().close()

    def is_connected(self) -> bool:
        """A connection counts from its opening until its reader is done with it.

        slack_sdk counts one only once its socket exists, which happens when its reader
        starts (up to half a second later). A connection that died is seen by two of its
        threads, the close handler and the monitor: each asked for a new one, and the second
        replaced the first's just after Slack had sent a request over it, which was lost.
        Asking under slack_sdk's connect lock, the second now finds the first's."""
        session = self.current_session
        return session is not None and session is not self._finished

    def _run_current_session(self) -> None:
        """Called every 0.5 s by slack_sdk's session runner: start reading a new connection
        in a thread of its own. A connection is read once; when it ends, slack_sdk's monitor
        asks Slack for a new URL (Slack's URLs work once)."""
        session = self.current_session
        if session is None or session is self._reading or self.closed:
            return
        self._reading = session
        threading.Thread(
            target=self._read, args=(session,), name="socket-mode-reader", daemon=True
        ).start()

    def _read(self, session: WebSocketApp) -> None:
        try:
            self.logger.info("Starting to receive messages from a new connection")
            session.run_forever(
                ping_interval=self.ping_interval,
                http_proxy_host=self.http_proxy_host,
                http_proxy_port=self.http_proxy_port,
                http_proxy_auth=self.http_proxy_auth,
                proxy_type=self.proxy_type,
            )
            self.logger.info("Stopped receiving messages from a connection")
        except Exception as e:
            self.logger.exception(f"Failed to start or stop the current session: {e}")
            session.close()
        finally:
            self._finished = session


class SocketMode:
    """feedbot's Socket Mode connection: Slack's envelopes go to the Bolt app, and each is
    acked once its listener has returned (the app processes before responding), as slack_bolt's
    own Socket Mode adapters do."""

    def __init__(
        self,
        app: App,
        app_token: str,
        *,
        ping_interval: float = PING_INTERVAL,
        pong_timeout: float = PONG_TIMEOUT,
    ) -> None:
        self.app = app
        self.client = FeedbotSocketModeClient(
            app_token=app_token,
            logger=app.logger,
            web_client=app.client,
            ping_interval=ping_interval,
            pong_timeout=pong_timeout,
        )
        self.client.socket_mode_request_listeners.append(self._handle)
        self.client.message_listeners.append(self._on_message)
        self._hello = threading.Event()

    def connect(self, timeout: float = HELLO_TIMEOUT) -> bool:
        """Ask Slack for a connection (raising `SlackApiError` when it refuses the app token)
        and wait up to `timeout` seconds for its `hello`. False if none came: the client goes
        on trying in the background."""
        try:
            self.client.connect()
        except BaseException:
            self.client.close()
            raise
        return self._hello.wait(timeout)

    def close(self) -> None:
        """Close the connection politely and stop every thread the client started."""
        self.client.close()

    def _handle(self, client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        started = time.time()
        send_response(client, request, run_bolt_app(self.app, request), started)

    def _on_message(self, client: Any, message: dict[str, Any], raw: str | None) -> None:
        if message.get("type") == "hello":
            self._hello.set()
            log.info(
                "Socket Mode connection open (%s open for this app)",
                message.get("num_connections", "?"),
            )
