"""HTTP mode: a WSGI application served by waitress (a production WSGI server).

`POST /slack/events` goes to Bolt (signature checked there); `GET /healthz` answers 200 only
while the database answers, so a load balancer takes a replica out when it cannot work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt import App
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from sqlalchemy import Engine

from feedbot.db import ping
from feedbot.metrics import exposition
from feedbot.slack.app import dispatch

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class FeedbotWSGI:
    def __init__(
        self, app: App, engine: Engine, *, leader: Callable[[], bool] = lambda: False
    ) -> None:
        self.app = app
        self.engine = engine
        self.leader = leader

    def _slack(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
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


def serve(
    app: App,
    engine: Engine,
    *,
    port: int,
    host: str = "0.0.0.0",  # noqa: S104
    threads: int = 16,
    leader: Callable[[], bool] = lambda: False,
) -> None:
    """Block serving HTTP until the process is told to stop."""
    from waitress import serve as waitress_serve

    log.info("serving Slack requests on http://%s:%s%s", host, port, EVENTS_PATH)
    waitress_serve(
        FeedbotWSGI(app, engine, leader=leader),
        host=host,
        port=port,
        threads=threads,
        ident="feedbot",
    )
