"""The HTTP listener: a WSGI application served by waitress (a production WSGI server).

Both modes serve `GET /healthz`, which answers 200 only while the database answers, Slack
takes the bot's token, and (when the work runs in a process of its own) that process has not
kept exiting for `feedbot.worker_process.DOWN_TOLERATED` seconds: a load balancer or
supervisor then takes out or restarts a replica that cannot work. And `GET /metrics`. Only HTTP mode serves
`POST /slack/events`, Slack's requests for Bolt; in Socket Mode that path does not exist, as
Slack's requests come over the socket and the signing secret may be unset or a stand-in.

A request to `POST /slack/events` reaches Bolt only once its size, its encoding and Slack's
signature are checked here (Bolt checks the signature again). Anyone on the network can send
one, so a refused request costs next to nothing and tells nothing: a bare status, one short
log line with the sender's address and the reason, never its body (which would let a stranger
fill the log or forge lines in it), and one metrics label for all of them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt import App
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Engine
from waitress.server import MultiSocketServer, create_server

from feedbot.core.access import Revocation
from feedbot.db import ping
from feedbot.metrics import SLACK_REQUESTS, exposition
from feedbot.slack.app import UNVERIFIED, dispatch
from feedbot.worker_process import Health

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HOOKS_PATH = "/hooks/reports/"
"""Ticket systems calling back (HTTP mode only): `feedbot.slack.inbound_hooks`."""

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body accepted (1 MiB), above anything Slack sends feedbot: payloads are a
few KB, and the largest, a modal submission, carries back a view feedbot built (Slack caps
views at 250 KB) with its inputs, form-encoded."""

MAX_REQUEST_AGE = 5 * 60
"""Seconds a signed request stays valid, as Slack documents and Bolt checks."""

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


@dataclass(frozen=True)
class _Answer:
    """An answer given without Bolt; `reason` (if any) is logged, never the request."""

    status: HTTPStatus
    reason: str = ""


class FeedbotWSGI:
    """The listener's WSGI application; `app` is the Bolt app in HTTP mode (with the signing
    secret it checks requests against), None in Socket Mode."""

    def __init__(
        self,
        app: App | None,
        engine: Engine,
        *,
        signing_secret: str = "",
        runs_jobs: Callable[[], bool] = lambda: False,
        refused: Callable[[], Revocation | None] = lambda: None,
        hooks: WSGIApplication | None = None,
        workers: Callable[[], Health] | None = None,
    ) -> None:
        """`workers`: how the inbox workers' process is doing, when the work runs in one."""
        if app is not None and not signing_secret.strip():
            raise ValueError("serving Slack's requests needs the signing secret")
        self.app = app
        self.engine = engine
        self.runs_jobs = runs_jobs
        self.refused = refused
        self.workers = workers
        self.hooks = hooks if app is not None else None  # calls back from ticket systems
        self.verifier = SignatureVerifier(signing_secret) if app is not None else None

    def _slack(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.app is None or self.verifier is None or environ.get("REQUEST_METHOD") != "POST":
            return _plain(start_response, "404 Not Found", b"Not Found")
        checked = _signed_request(environ, self.verifier)
        if isinstance(checked, _Answer):
            status = checked.status
            SLACK_REQUESTS.labels(UNVERIFIED, f"{status // 100}xx").inc()
            if checked.reason:
                sender = environ.get("REMOTE_ADDR") or "an unknown address"
                log.info("refused a request from %s: %s", sender, checked.reason)
            text = b"" if status == HTTPStatus.OK else status.phrase.encode()
            return _plain(start_response, f"{status.value} {status.phrase}", text)
        body, headers = checked
        response = dispatch(
            self.app, body=body, headers=headers, query=environ.get("QUERY_STRING") or None
        )
        content = response.body.encode("utf-8") if isinstance(response.body, str) else response.body
        reply = [(name, value) for name, values in response.headers.items() for value in values]
        reply = [(n, v) for n, v in reply if n.lower() != "content-length"]
        reply.append(("Content-Length", str(len(content))))
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", reply)
        return [content]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz" and environ.get("REQUEST_METHOD") in {"GET", "HEAD"}:
            database = ping(self.engine)
            refused = self.refused() if database else None
            work = self.workers() if self.workers is not None else None
            healthy = database and refused is None and (work is None or work.ok)
            body = json.dumps(
                {
                    "ok": healthy,
                    "database": "ok" if database else "unreachable",
                    "slack": "ok"
                    if refused is None
                    else f"bot token refused since {refused.revoked_at:%Y-%m-%d %H:%M} UTC "
                    f"({refused.reason}); reinstall the app and set SLACK_BOT_TOKEN",
                    "job_runner": self.runs_jobs(),
                }
                | ({"workers": work.detail} if work is not None else {})
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
        if self.hooks is not None and path.startswith(HOOKS_PATH):
            return self.hooks(environ, start_response)
        return _plain(start_response, "404 Not Found", b"Not Found")


def _plain(start_response: StartResponse, status: str, body: bytes) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _signed_request(
    environ: WSGIEnvironment, verifier: SignatureVerifier
) -> _Answer | tuple[str, dict[str, Any]]:
    """The body and headers of a request Slack signed, or the answer to give instead."""
    raw = _read_body(environ)
    if isinstance(raw, _Answer):
        return raw
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Answer(HTTPStatus.BAD_REQUEST, "body is not UTF-8")
    headers: dict[str, Any] = WsgiHttpRequest(environ).get_headers()
    timestamp = str(headers.get("x-slack-request-timestamp") or "")
    signature = str(headers.get("x-slack-signature") or "")
    if not timestamp and not signature and _is_ssl_check(body):
        return _Answer(HTTPStatus.OK)  # Slack checks the certificate without signing
    if not timestamp or not signature:
        return _Answer(HTTPStatus.UNAUTHORIZED, "not signed")
    if not _TIMESTAMP.fullmatch(timestamp):
        return _Answer(HTTPStatus.UNAUTHORIZED, "timestamp is not a number")
    if abs(time.time() - int(timestamp)) > MAX_REQUEST_AGE:
        return _Answer(
            HTTPStatus.UNAUTHORIZED,
            "timestamp more than 5 minutes off (a replay, or this machine's clock is wrong)",
        )
    if not _SIGNATURE.fullmatch(signature) or not verifier.is_valid(body, timestamp, signature):
        return _Answer(HTTPStatus.UNAUTHORIZED, "signature does not match")
    return body, headers


def _read_body(environ: WSGIEnvironment) -> bytes | _Answer:
    """The body, read only if it is within `MAX_BODY_BYTES`: by its Content-Length, or, when
    there is none (chunked), by reading at most one byte more than the limit."""
    too_large = _Answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
    declared = str(environ.get("CONTENT_LENGTH") or "")
    if declared:
        if not (declared.isascii() and declared.isdigit()):
            return _Answer(HTTPStatus.BAD_REQUEST, "Content-Length is not a number")
        digits = declared.lstrip("0") or "0"
        if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES:
            return too_large
        wanted = int(digits)
    else:
        wanted = MAX_BODY_BYTES + 1
    stream = environ.get("wsgi.input")
    raw = stream.read(wanted) if stream is not None and wanted else b""
    return too_large if len(raw) > MAX_BODY_BYTES else bytes(raw)


def _is_ssl_check(body: str) -> bool:
    """Slack's certificate check: a short unsigned form with `ssl_check=1` (Bolt answers it
    before checking signatures too)."""
    if len(body) > 1024 or "ssl_check" not in body:
        return False
    return parse_qs(body).get("ssl_check") == ["1"]


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
        signing_secret: str = "",
        threads: int = 16,
        runs_jobs: Callable[[], bool] = lambda: False,
        refused: Callable[[], Revocation | None] = lambda: None,
        hooks: WSGIApplication | None = None,
        workers: Callable[[], Health] | None = None,
        **adjustments: Any,
    ) -> None:
        self._map: dict[Any, Any] = {}
        # Any: waitress's type stubs miss attributes used here (effective_port, trigger thunks).
        self.server: Any = create_server(
            FeedbotWSGI(
                app,
                engine,
                signing_secret=signing_secret,
                runs_jobs=runs_jobs,
                refused=refused,
                hooks=hooks,
                workers=workers,
            ),
            map=self._map,
            host=host,
            port=port,
            threads=threads,
            ident="feedbot",
            # waitress refuses a body this long or longer with 413 before reading it, whether
            # announced by Content-Length or arriving in chunks.
            max_request_body_size=MAX_BODY_BYTES + 1,
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
        try:
            wake.pull_trigger(lambda: wasyncore.close_all(self._map))
        except OSError:  # the loop is closing already and took its trigger with it
            wasyncore.close_all(self._map, ignore_all=True)
