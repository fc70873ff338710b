"""The HTTP listener: a WSGI application served by waitress (a production WSGI server).

Both modes serve `GET /healthz`, which answers 200 only while the database answers (so a load
balancer takes a replica out when it cannot work), and `GET /metrics`. Only HTTP mode serves
`POST /slack/events`, Slack's requests for Bolt; in Socket Mode that path does not exist, as
Slack's requests come over the socket and the signing secret may be unset or a stand-in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt import App
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from sqlalchemy import Engine
from waitress.server import MultiSocketServer, create_server

from feedbot.db import ping
from feedbot.metrics import exposition
from feedbot.slack.app import dispatch

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class FeedbotWSGI:
    """The listener's WSGI application; `app` is the Bolt app in HTTP mode, None in Socket Mode."""

    def __init__(
        self, app: App | None, engine: Engine, *, leader: Callable[[], bool] = lambda: False
    ) -> None:
        self.app = app
        self.engine = engine
        self.leader = leader

    def _slack(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.app is None or environ.get("REQUEST_METHOD") != "POST":
            return _plain(start_response, "404 Not Found", b"Not Found")
        request = WsgiHttpRequest(environ)
        response = dispatch(
            self.app,
            body=request.get_body(),
            headers=request.get_headers(),
            query=request.query_string,
        )
        body = response.body.encode("utf-8") if isinstance(response.body, str) else response.body
        headers = [(name, value) for name, values in response.headers.items() for value in values]
        headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        return [body]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz" and environ.get("REQUEST_METHOD") in {"GET", "HEAD"}:
            healthy = ping(self.engine)
            body = json.dumps(
                {
                    "ok": healthy,
                    "database": "ok" if healthy else "unreachable",
                    "scheduler_leader": self.leader(),
                }
            ).encode()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(
                status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        if path == "/metrics" and environ.get("REQUEST_METHOD") in {"GET", "HEAD"}:
            body = exposition()
            start_response(
                "200 OK",
                [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))],
            )
            return [body]
        if path == EVENTS_PATH:
            return self._slack(environ, start_response)
        return _plain(start_response, "404 Not Found", b"Not Found")


def _plain(start_response: StartResponse, status: str, body: bytes) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Listener:
    """`FeedbotWSGI` in waitress, bound to `host:port` (port 0: any free port) when built.

    `run()` serves until the process ends or `stop()` is called from another thread."""

    def __init__(
        self,
        app: App | None,
        engine: Engine,
        *,
        host: str,
        port: int,
        threads: int = 16,
        leader: Callable[[], bool] = lambda: False,
        **adjustments: Any,
    ) -> None:
        self._map: dict[Any, Any] = {}
        # Any: waitress's type stubs miss attributes used here (effective_port, trigger thunks).
        self.server: Any = create_server(
            FeedbotWSGI(app, engine, leader=leader),
            map=self._map,
            host=host,
            port=port,
            threads=threads,
            ident="feedbot",
            **adjustments,
        )

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen for port 0)."""
        if isinstance(self.server, MultiSocketServer):  # e.g. localhost: IPv4 and IPv6
            return int(self.server.effective_listen[0][1])
        return int(self.server.effective_port)

    def run(self) -> None:
        self.server.run()

    def stop(self, timeout: int = 5) -> None:
        """Let answers in progress finish, then close every socket, which ends `run()`."""
        from waitress import wasyncore
        from waitress.trigger import trigger

        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)
        # Close the sockets from the server's own loop: closing them from another thread
        # while it sits in select() makes it fail with EBADF.
        wake: Any = next(d for d in list(self._map.values()) if isinstance(d, trigger))
        wake.pull_trigger(lambda: wasyncore.close_all(self._map))
