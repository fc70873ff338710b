"""HTTP mode: a WSGI application served by waitress (a production WSGI server).

`POST /slack/events` goes to Bolt (signature checked there); `GET /healthz` answers 200 only
while the database answers, so a load balancer takes a replica out when it cannot work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import Engine

from feedbot.db import ping

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class FeedbotWSGI:
    def __init__(self, app: App, engine: Engine) -> None:
        self.slack = SlackRequestHandler(app, path=EVENTS_PATH)
        self.engine = engine

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz" and environ.get("REQUEST_METHOD") in {"GET", "HEAD"}:
            healthy = ping(self.engine)
            body = json.dumps(
                {"ok": healthy, "database": "ok" if healthy else "unreachable"}
            ).encode()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(
                status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        if path == EVENTS_PATH:
            return self.slack(environ, start_response)
        body = b"Not Found"
        start_response(
            "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]


def serve(app: App, engine: Engine, *, port: int, host: str = "0.0.0.0", threads: int = 16) -> None:  # noqa: S104
    """Block serving HTTP until the process is told to stop."""
    from waitress import serve as waitress_serve

    log.info("serving Slack requests on http://%s:%s%s", host, port, EVENTS_PATH)
    waitress_serve(FeedbotWSGI(app, engine), host=host, port=port, threads=threads, ident="feedbot")
