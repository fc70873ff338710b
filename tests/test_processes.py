"""Several real feedbot processes on one database, driven over HTTP against the fake Slack:
one scheduler leader at a time, failover when it dies, retries handled once whichever process
they reach, scheduled work done once."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from feedbot.core import outbox as core_outbox
from feedbot.core.config import set_value
from feedbot.db import make_engine, session_scope
from feedbot.models import OutboxMessage, OutboxStatus, Report, utcnow
from tests.conftest import _truncate_all
from tests.fakeslack import FakeSlack
from tests.harness import (
    ALICE,
    INTAKE,
    LEADER,
    LEADERSHIP,
    SECRET_KEY,
    SIGNING_SECRET,
    TOKEN,
    process_gone,
    sign,
)

pytestmark = pytest.mark.slow


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, and none handed out before in this test run: the system
    may give a port just released again, and two replicas started on one port answer as two
    healthy ones while the second has exited ("Address already in use")."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[str]
    log: Path

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/healthz", timeout=2
            ) as reply:
                return dict(json.loads(reply.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def worker_pid(self) -> int | None:
        """The process of its inbox workers (`feedbot.worker_process`), the latest started,
        while it runs."""
        found = re.findall(r"inbox workers started in process (\d+)", self.log.read_text())
        if not found:
            return None
        try:
            command = Path(f"/proc/{found[-1]}/cmdline").read_bytes()
        except OSError:
            return None
        return int(found[-1]) if b"inbox-worker" in command else None

    def post(self, body: str, content_type: str, headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/slack/events",
            data=body.encode(),
            headers={"Content-Type": content_type, **sign(body), **(headers or {})},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


def start(url: str, slack: FakeSlack, tmp_path: Path, name: str) -> Replica:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FEEDBOT_"))}
    env |= {
        "DATABASE_URL": url,
        "HOST": "127.0.0.1",  # set, or an inherited HOST (some shells export one) would win
        "SLACK_API_URL": slack.base_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "FEEDBOT_SECRET_KEY": SECRET_KEY,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "FEEDBOT_TIMEZONE": "Europe/Berlin",
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "feedbot", "run", "--http", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Replica(port, process, log)


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def leaders(replicas: list[Replica]) -> list[Replica]:
    return [
        r for r in replicas if r.process.poll() is None and (r.health() or {}).get("job_runner")
    ]


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    engine = make_engine(postgres_url)
    _truncate_all(engine)
    with session_scope(engine) as session:
        # Configured a month ago: last week's digest is due, late.
        set_value(
            session,
            key="leadership_channel",
            raw=LEADERSHIP,
            actor="test",
            now=utcnow() - timedelta(days=30),
        )
        set_value(session, key="intake_channels", raw=INTAKE, actor="test")
        set_value(session, key="leaders", raw=LEADER, actor="test")
        # One person files dozens of reports here, on purpose: no per-person limit.
        set_value(session, key="report_rate_limit", raw="0", actor="test")
    engine.dispose()
    yield postgres_url


@pytest.fixture
def replicas(pg_url: str, slack: FakeSlack, tmp_path: Path) -> Iterator[list[Replica]]:
    group = [start(pg_url, slack, tmp_path, f"replica{n}") for n in range(3)]
    try:
        wait_for(
            lambda: all(r.process.poll() is None and r.health() for r in group),
            60,
            "three healthy replicas",
        )
        yield group
    finally:
        for replica in group:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in group:
            try:
                replica.process.wait(10)
            except subprocess.TimeoutExpired:
                replica.process.kill()


def event_body(event_id: str, ts: str) -> str:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0TEAM",
            "api_app_id": "A0FEEDBOT",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": {
                "type": "message",
                "channel": INTAKE,
                "channel_type": "channel",
                "user": ALICE,
                "text": "Kasse 4 in Shop Jena hängt seit heute früh",
                "ts": ts,
            },
        }
    )


def test_three_replicas_elect_one_scheduler_and_fail_over(
    replicas: list[Replica], pg_url: str, slack: FakeSlack
) -> None:
    wait_for(lambda: len(leaders(replicas)) == 1, 30, "one scheduler leader")
    leader = leaders(replicas)[0]

    ts = slack.add_message(INTAKE, "Kasse 4 in Shop Jena hängt seit heute früh", user=ALICE)
    body = event_body("Ev0MULTI01", ts)
    first, second = (r for r in replicas if r is not leader)
    assert first.post(body, "application/json") == 200
    assert (
        second.post(
            body,
            "application/json",
            {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
        )
        == 200
    )
    assert leader.post(body, "application/json", {"X-Slack-Retry-Num": "2"}) == 200
    engine = make_engine(pg_url)

    def reports() -> int:  # acked at once, filed from the inbox a moment later
        with Session(engine) as session:
            return int(session.exec(select(func.count()).select_from(Report)).one())

    wait_for(lambda: reports() == 1, 20, "the report")

    def cards() -> list[dict[str, object]]:
        return [
            m
            for m in slack.messages(LEADERSHIP)
            if not m.get("thread_ts") and "FB-1001" in str(m["text"])
        ]

    try:
        wait_for(lambda: len(cards()) == 1, 20, "the card")
    except AssertionError:
        with Session(engine) as session:
            rows = session.exec(select(OutboxMessage)).all()
        raise AssertionError(
            [(r.id, r.conversation, r.method, r.status, r.last_error) for r in rows]
        ) from None

    leader.process.send_signal(signal.SIGKILL)
    leader.process.wait(10)
    killed_at = time.monotonic()
    wait_for(lambda: len(leaders(replicas)) == 1, 30, "a new leader after the old one was killed")
    assert time.monotonic() - killed_at < 30
    assert leaders(replicas)[0] is not leader
    engine.dispose()


def test_scheduled_work_is_done_once_across_replicas_and_failover(
    replicas: list[Replica], pg_url: str, slack: FakeSlack
) -> None:
    engine = make_engine(pg_url)
    with session_scope(engine) as session:
        set_value(session, key="working_days", raw="mon,tue,wed,thu,fri,sat,sun", actor="test")
        set_value(session, key="working_hours", raw="00:00-23:59", actor="test")
    wait_for(lambda: len(leaders(replicas)) == 1, 30, "one leader")
    wait_for(lambda: digests(slack) == 1, 30, "last week's digest, late")
    ts = slack.add_message(INTAKE, "Alle Kassen in Region Ost lehnen Kartenzahlung ab", user=ALICE)
    assert replicas[0].post(event_body("Ev0MULTI02", ts), "application/json") == 200
    wait_for(lambda: card_ts(slack) is not None, 20, "the card")
    with session_scope(engine) as session:  # nine days unacknowledged: a reminder is due
        report = session.exec(select(Report)).one()
        report.created_at = utcnow() - timedelta(days=9)
        session.add(report)
    for _ in range(2):  # two failovers: each new leader runs every job at once
        leader = leaders(replicas)[0]
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait(10)
        wait_for(lambda: len(leaders(replicas)) == 1, 30, "failover")
        wait_for(lambda: reminders(slack) >= 1, 30, "the reminder")
        time.sleep(3)
    assert digests(slack) == 1, "one digest for last week, whatever the failovers"
    assert reminders(slack) == 1, "the first reminder, once"
    engine.dispose()


def card_ts(slack: FakeSlack) -> str | None:
    for message in slack.messages(LEADERSHIP):
        if not message.get("thread_ts") and "FB-1001" in str(message["text"]):
            return str(message["ts"])
    return None


def digests(slack: FakeSlack) -> int:
    return sum(1 for m in slack.messages(LEADERSHIP) if str(m["text"]).startswith("Weekly digest"))


def reminders(slack: FakeSlack) -> int:
    card = card_ts(slack)
    return sum(1 for m in slack.messages(LEADERSHIP) if card and m.get("thread_ts") == card)


def test_a_second_run_on_one_sqlite_file_is_refused(tmp_path: Path, slack: FakeSlack) -> None:
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    first = start(url, slack, tmp_path, "first")
    try:
        wait_for(lambda: first.health() is not None, 60, "the first bot")
        second = start(url, slack, tmp_path, "second")
        assert second.process.wait(60) == 2
        assert "already uses" in second.log.read_text()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FEEDBOT_"))} | {
            "DATABASE_URL": url
        }
        beside = subprocess.run(
            [sys.executable, "-m", "feedbot", "config", "get", "leaders"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert beside.returncode == 0, beside.stderr
        assert (first.health() or {}).get("job_runner") is True
    finally:
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(10)


def _locked(path: Path) -> bool:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _metric(replica: Replica, line_start: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{replica.port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_the_inbox_workers_process_is_restarted_and_dies_with_its_bot(
    database_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    """`feedbot run` works its inbox in a child process: a report acked by the bot is filed
    there, counted in the bot's /metrics; while the child takes nothing, the bot logs that
    requests wait; a child killed mid-run is started again and what waits is filed; a bot killed with SIGKILL takes its child with it, and on SQLite
    its lock file stays held until the child is gone."""
    from urllib.parse import urlencode

    from tests import slack_payloads as payloads

    engine = make_engine(database_url)
    with session_scope(engine) as session:
        set_value(session, key="leadership_channel", raw=LEADERSHIP, actor="test")
        set_value(session, key="leaders", raw=LEADER, actor="test")
        set_value(session, key="report_rate_limit", raw="0", actor="test")
    bot = start(database_url, slack, tmp_path, "bot")

    def report(text: str) -> str:
        url = slack.new_response_url()
        form = payloads.slash_command(
            user=ALICE, text=text, channel="CGENERAL1", channel_name="general", response_url=url
        )
        assert bot.post(urlencode(form), "application/x-www-form-urlencoded") == 200
        return url

    def filed(text: str) -> bool:
        with Session(engine) as session:
            return session.exec(select(func.count()).where(Report.text == text)).one() == 1

    def answered(url: str) -> bool:
        return any(response["_url"] == url for response in list(slack.responses))

    try:
        wait_for(lambda: bot.health() is not None, 60, "the bot")
        wait_for(lambda: bot.worker_pid() is not None, 30, "its inbox workers")
        first_worker = bot.worker_pid()
        assert first_worker is not None and first_worker != bot.process.pid
        health = bot.health()
        assert health is not None and health["workers"] == f"running in process {first_worker}"
        url = report("Der Drucker im Lager druckt nur leere Seiten")
        wait_for(lambda: filed("Der Drucker im Lager druckt nur leere Seiten"), 30, "the report")
        wait_for(lambda: answered(url), 30, "its receipt")
        assert _metric(bot, 'feedbot_reports_created_total{source="command"}') == 1.0

        # A child that takes nothing: the bot itself says that requests wait too long.
        os.kill(first_worker, signal.SIGSTOP)
        report("Das Kassenterminal in Filiale 3 startet ständig neu")
        wait_for(lambda: "inbox falling behind" in bot.log.read_text(), 30, "the late log line")
        os.kill(first_worker, signal.SIGKILL)
        wait_for(lambda: bot.worker_pid() not in (None, first_worker), 30, "a new child")
        wait_for(lambda: filed("Das Kassenterminal in Filiale 3 startet ständig neu"), 30, "it")
        url = report("Die Kasse in Filiale 7 bucht doppelt")
        wait_for(lambda: filed("Die Kasse in Filiale 7 bucht doppelt"), 30, "the next report")
        wait_for(lambda: answered(url), 30, "its receipt")
        assert _metric(bot, 'feedbot_reports_created_total{source="command"}') == 3.0
        assert "exited with -9; starting it again" in bot.log.read_text()

        second_worker = bot.worker_pid()
        assert second_worker is not None
        if database_url.startswith("sqlite"):
            # Until the child is gone its work may still write: the lock file stays held.
            os.kill(second_worker, signal.SIGSTOP)
        bot.process.send_signal(signal.SIGKILL)
        bot.process.wait(10)
        if database_url.startswith("sqlite"):
            assert _locked(Path(f"{engine.url.database}.lock"))
            os.kill(second_worker, signal.SIGCONT)
        wait_for(lambda: process_gone(second_worker), 10, "the child to die with its bot")
        if database_url.startswith("sqlite"):
            lock = Path(f"{engine.url.database}.lock")
            wait_for(lambda: not _locked(lock), 5, "the lock file to be free")
    finally:
        if bot.process.poll() is None:
            bot.process.send_signal(signal.SIGTERM)
            bot.process.wait(20)
        engine.dispose()


@pytest.mark.parametrize("dead_call", ["fails", "lands_soon", "lands_late"])
def test_a_card_cut_off_mid_send_goes_out_once_after_a_restart(
    database_url: str, slack: FakeSlack, tmp_path: Path, dead_call: str
) -> None:
    """A bot killed with its workers while Slack is still taking a report's card (slowly:
    the call fails after 5 s, or lands after 2 s or after 7 s), and started again at once.
    The restarted process takes the card over within 5 s (`POST_TAKEN_OVER_AFTER` after the
    dead call began), not after the claim's minute, and the card ends up in Slack once:
    only recorded if the dead call landed before the recheck, posted again if not, and a
    copy the dead call posts after that is deleted once the dead call could no longer land
    (`CALL_TIMEOUT`)."""
    from urllib.parse import urlencode

    from tests import slack_payloads as payloads

    engine = make_engine(database_url)
    with session_scope(engine) as session:
        set_value(session, key="leadership_channel", raw=LEADERSHIP, actor="test")
        set_value(session, key="leaders", raw=LEADER, actor="test")

    def entry(purpose: str) -> OutboxMessage | None:
        with Session(engine) as session:
            return session.exec(
                select(OutboxMessage).where(OutboxMessage.purpose == purpose)
            ).first()

    def cards() -> list[dict[str, object]]:
        return [m for m in slack.messages(LEADERSHIP) if not m.get("thread_ts")]

    first = start(database_url, slack, tmp_path, "first")
    second: Replica | None = None
    try:
        wait_for(lambda: first.health() is not None, 60, "the bot")
        wait_for(lambda: first.worker_pid() is not None, 30, "its inbox workers")
        worker = first.worker_pid()
        assert worker is not None
        if dead_call == "fails":
            slack.fail("chat.postMessage", times=1, status=500, delay=5.0)
        else:
            landing = 2.0 if dead_call == "lands_soon" else 7.0
            slack.fail("chat.postMessage", times=1, status=200, error="", delay=landing)
        form = payloads.slash_command(
            user=ALICE,
            text="Die Waage in Filiale 9 wiegt falsch",
            channel="CGENERAL1",
            channel_name="general",
            response_url=slack.new_response_url(),
        )
        assert first.post(urlencode(form), "application/x-www-form-urlencoded") == 200
        wait_for(lambda: slack.faults_left("chat.postMessage") == 0, 30, "the card's call")
        in_flight = entry("card")
        assert in_flight is not None and in_flight.status == OutboxStatus.SENDING
        assert in_flight.lease_until is not None
        renewed = in_flight.lease_until.replace(tzinfo=in_flight.lease_until.tzinfo or UTC)
        call_began = renewed - core_outbox.LEASE  # the lease is renewed as the call begins
        os.kill(worker, signal.SIGKILL)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        wait_for(lambda: process_gone(worker), 10, "its workers to be gone")

        restarted = time.monotonic()
        second = start(database_url, slack, tmp_path, "second")
        wait_for(
            lambda: (card := entry("card")) is not None and card.status == OutboxStatus.SENT,
            30,
            "the card taken over",
        )
        took = time.monotonic() - restarted  # 3.2 to 3.9 s here (printed below)
        wait_for(lambda: cards(), 10, "the card in Slack")
        log = second.log.read_text()
        assert re.search(r"took over \d+ outbox messages", log)
        if dead_call == "lands_soon":
            assert "already posted before a restart, not sending again" in log
        else:
            assert "already posted" not in log
            card = entry("card")
            assert card is not None and card.result_ts is not None
            not_before = call_began + core_outbox.POST_TAKEN_OVER_AFTER
            assert float(card.result_ts) >= not_before.timestamp(), "rechecked first"
        wait_for(
            lambda: (look := entry("copies")) is not None and look.status == OutboxStatus.SENT,
            30,
            "the second look for copies",
        )
        look = entry("copies")
        assert look is not None and look.sent_at is not None
        looked_at = look.sent_at.replace(tzinfo=look.sent_at.tzinfo or UTC)
        assert looked_at >= call_began + core_outbox.CALL_TIMEOUT, "once it cannot land"
        copies = "deleted 1 copies a call that landed late posted"
        assert (copies in second.log.read_text()) == (dead_call == "lands_late")
        time.sleep(2)
        (kept,) = cards()
        print(json.dumps({"dead_call": dead_call, "card_sent_after_restart_s": round(took, 1)}))
        sent = entry("card")
        assert sent is not None and sent.sent_at is not None
        assert sent.result_ts == kept["ts"], "the card edited later is the one left"
        sent_at = sent.sent_at.replace(tzinfo=sent.sent_at.tzinfo or UTC)
        # Well before the dead call could no longer land (when it was taken over before):
        # 3 s after the call began, plus the restart's start and its first look for dead
        # processes' claims. The seconds after the restart are printed above.
        assert sent_at - call_began < timedelta(seconds=8), "taken over early"
    finally:
        for replica in (first, second):
            if replica is not None and replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
                replica.process.wait(20)
        engine.dispose()


def test_the_inbox_workers_refuse_to_start_by_hand(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FEEDBOT_"))}
    started = subprocess.run(
        [sys.executable, "-m", "feedbot", "inbox-worker"],
        env=env | {"DATABASE_URL": f"sqlite:///{tmp_path / 'feedbot.db'}"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert "started by feedbot run, not by hand" in started.stderr
