"""The HTTP listener against a stranger on the network: in Socket Mode it serves no Slack
requests at all; in HTTP mode a request that is too big, unreadable or not signed by Slack is
refused before Bolt sees it, costs next to nothing, is logged as one short line without its
body and is counted under one metrics label.

Over real HTTP, as `tests/test_http.py`: the production listener on a free port.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from slack_bolt import App, BoltRequest, BoltResponse
from sqlmodel import Session, select

from feedbot.cli import build_parser, cmd_run
from feedbot.core.errors import ConfigurationError
from feedbot.db import make_engine
from feedbot.models import Report
from feedbot.settings import Settings, get_settings
from feedbot.slack.server import EVENTS_PATH
from tests.fakeslack import FakeSlack
from tests.harness import ALICE, SIGNING_SECRET, TOKEN, sign
from tests.test_http import Reply, request
from tests.test_processes import free_port

APP_TOKEN = "xapp-1-A0123ABCDEF-1234567890123-0123456789abcdef0123456789abcdef"
PLACEHOLDER_SECRET = "your-signing-secret"  # as in .env.example


def command_form(user: str, text: str) -> str:
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": "T0TEAM",
            "channel_id": "CGENERAL1",
            "user_id": user,
            "command": "/feedback",
            "text": text,
            "api_app_id": "A0FEEDBOT",
            "trigger_id": "1337.42",
            "response_url": "https://hooks.slack.invalid/commands/1",
        }
    )


@pytest.fixture
def run_env(
    tmp_path: Path, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """An environment for the real `cmd_run` in this process: settings from the environment
    (returned; change them before the run), the fake Slack, a SQLite file."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env = {
        "SLACK_API_URL": fake_slack.base_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'feedbot.db'}",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
    }
    monkeypatch.setattr("feedbot.cli.watch_outbox", lambda engine: None)  # a process-wide registry
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    yield env
    get_settings.cache_clear()


def run(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    cmd_run(build_parser().parse_args(["run", *args]))


# -- Socket Mode --------------------------------------------------------------------------------


def test_in_socket_mode_the_listener_serves_no_slack_requests(
    run_env: dict[str, str], fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`feedbot run --socket` with the signing secret still the `.env.example` stand-in: a
    stranger who signs a request with it reaches nothing, while health and metrics answer.

    Runs the real `cmd_run`; only the connection to Slack is replaced, by a handler that
    probes the listener and then fails the way a refused connection does, ending the run."""
    fake_slack.add_user(ALICE, locale="en-US")
    run_env |= {"SLACK_APP_TOKEN": APP_TOKEN, "SLACK_SIGNING_SECRET": PLACEHOLDER_SECRET}
    reached_bolt: list[BoltRequest] = []
    real_dispatch = App.dispatch

    def spy(app: App, req: BoltRequest) -> BoltResponse:
        reached_bolt.append(req)
        return real_dispatch(app, req)

    monkeypatch.setattr(App, "dispatch", spy)
    replies: dict[str, Reply] = {}
    base = f"http://127.0.0.1:{run_env['PORT']}"

    class ProbingHandler:
        def __init__(self, app: App, app_token: str) -> None:
            assert app_token == APP_TOKEN

        def connect(self) -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the listener may still be starting
                with contextlib.suppress(OSError):
                    replies["health"] = request(base, "GET", "/healthz")
                    break
                time.sleep(0.05)
            body = command_form(ALICE, "Forged through the health port")
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                **sign(body, secret=PLACEHOLDER_SECRET),
            }
            replies["forged"] = request(base, "POST", EVENTS_PATH, body, headers)
            replies["metrics"] = request(base, "GET", "/metrics")
            raise OSError("probed; end the run")

    monkeypatch.setattr("slack_bolt.adapter.socket_mode.SocketModeHandler", ProbingHandler)
    with pytest.raises(ConfigurationError, match="SLACK_APP_TOKEN"):
        run(run_env, monkeypatch, "--socket")

    assert replies["forged"].status == 404
    assert reached_bolt == []
    assert replies["health"].status == 200 and replies["health"].json()["ok"] is True
    assert replies["metrics"].status == 200
    engine = make_engine(run_env["DATABASE_URL"])
    with Session(engine) as session:
        assert session.exec(select(Report)).all() == []
    engine.dispose()


def test_an_address_in_use_stops_the_start_with_one_message(
    run_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run_env["PORT"] = str(port)
        with pytest.raises(ConfigurationError) as refused:
            run(run_env, monkeypatch, "--http")
    message = str(refused.value)
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in message
    assert "HOST" in message and "PORT" in message
