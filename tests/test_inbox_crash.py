"""Nothing acked is lost, nothing is done twice: real bots under load, killed with SIGKILL
at random moments and restarted, on SQLite (one process) and PostgreSQL (two replicas).

The client behaves as Slack does: an event is delivered again until it is acked (same
`event_id`); a slash command is sent once (a person who saw it fail types it again, which is
a new command). Afterwards every acked request has exactly one report, one card and one
receipt; a command that was never acked has at most one report. (A command's receipt goes to
its `response_url`, which has no history to check: a bot killed just after Slack took it
sends it again, replacing the first, so the person still sees one.)
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlmodel import Session, func, select

from feedbot.core.config import set_value
from feedbot.db import arrivals_engine, make_engine, session_scope
from feedbot.models import ARRIVAL, InboxEntry, InboxStatus, OutboxMessage, OutboxStatus, Report
from tests import slack_payloads as payloads
from tests.fakeslack import FakeSlack
from tests.harness import ALICE, INTAKE, LEADER, LEADERSHIP, sign
from tests.test_processes import (
    Replica,
    start,
    wait_for,
)

pytestmark = pytest.mark.slow

LOAD_SECONDS = 15.0
REQUESTS_PER_SECOND = 5.0


@pytest.fixture
def configured(database_url: str) -> str:
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        set_value(session, key="leadership_channel", raw=LEADERSHIP, actor="test")
        set_value(session, key="intake_channels", raw=INTAKE, actor="test")
        set_value(session, key="leaders", raw=LEADER, actor="test")
        set_value(session, key="report_rate_limit", raw="0", actor="test")
        set_value(session, key="burst_threshold", raw="0", actor="test")  # a card per report
    engine.dispose()
    return database_url


class Fleet:
    """The bots: killed and restarted by `chaos`, picked at random by the client."""

    def __init__(self, url: str, slack: FakeSlack, tmp_path: Path, size: int) -> None:
        self.url, self.slack, self.tmp_path = url, slack, tmp_path
        self.lock = threading.Lock()
        self.started = 0
        self.replicas = [self._start() for _ in range(size)]
        self.kills = 0
        self.worker_kills = 0

    def _start(self) -> Replica:
        self.started += 1
        return start(self.url, self.slack, self.tmp_path, f"bot{self.started}")

    def pick(self) -> Replica:
        with self.lock:
            return random.choice(self.replicas)

    def kill_one(self) -> None:
        """Kill a bot (its inbox workers' process goes with it) and start another, or kill
        only the process of a bot's inbox workers (the bot starts them again)."""
        with self.lock:
            victim = random.choice(self.replicas)
            worker = victim.worker_pid()
            if worker is not None and (self.kills + self.worker_kills) % 3 == 2:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker, signal.SIGKILL)
                    self.worker_kills += 1
                    return
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(10)
            self.kills += 1
            self.replicas[self.replicas.index(victim)] = self._start()

    def stop(self) -> None:
        for replica in self.replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            try:
                replica.process.wait(10)
            except Exception:
                replica.process.kill()


def post(replica: Replica, body: str, content_type: str, headers: dict[str, str]) -> int | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{replica.port}/slack/events",
        data=body.encode(),
        headers={"Content-Type": content_type, **sign(body), **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None  # refused, reset, or killed mid-answer: not acked


@pytest.mark.parametrize("size", [1, 2], ids=["one-bot", "two-replicas"])
def test_bots_killed_at_random_lose_no_acked_request_and_do_nothing_twice(
    configured: str, slack: FakeSlack, tmp_path: Path, size: int
) -> None:
    postgresql = configured.startswith("postgresql")
    if size == 2 and not postgresql:
        pytest.skip("SQLite serves one process")
    if size == 1 and postgresql:
        pytest.skip("covered by two replicas")
    fleet = Fleet(configured, slack, tmp_path, size)
    acked_commands: dict[str, str] = {}  # text -> response_url
    unacked_commands: dict[str, str] = {}
    events: dict[str, str] = {}  # event_id -> ts
    stop = threading.Event()
    try:
        wait_for(lambda: all(r.health() for r in fleet.replicas), 60, "the bots")

        def chaos() -> None:  # each bot serves a moment after its start, then dies
            while not stop.is_set():
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not all(
                    r.health() for r in list(fleet.replicas)
                ):
                    time.sleep(0.1)
                if stop.wait(random.uniform(0.5, 2.0)):
                    return
                fleet.kill_one()

        def client(worker: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                if n % 3 == 0:  # a post in the intake channel, delivered until acked
                    ts = slack.add_message(INTAKE, f"Kasse {worker}-{n} steht", user=ALICE)
                    event_id = f"Ev{worker}x{n}"
                    event = payloads.message_event(
                        user=ALICE,
                        text=f"Kasse {worker}-{n} steht",
                        channel=INTAKE,
                        channel_type="channel",
                        ts=ts,
                    )
                    body = json.dumps(payloads.event_callback(event, event_id=event_id))
                    for attempt in range(60):
                        headers = {"X-Slack-Retry-Num": str(attempt)} if attempt else {}
                        if post(fleet.pick(), body, "application/json", headers) == 200:
                            events[event_id] = ts
                            break
                        time.sleep(0.5)
                    else:
                        raise AssertionError(f"{event_id} was never acked")
                else:
                    text = f"Drucker {worker}-{n} druckt nichts"
                    url = slack.new_response_url()
                    form = payloads.slash_command(
                        user=ALICE,
                        text=text,
                        channel="CGENERAL1",
                        channel_name="general",
                        response_url=url,
                    )
                    status = post(
                        fleet.pick(), urlencode(form), "application/x-www-form-urlencoded", {}
                    )
                    (acked_commands if status == 200 else unacked_commands)[text] = url
                time.sleep(random.expovariate(REQUESTS_PER_SECOND / 3))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        killer = threading.Thread(target=chaos)
        for thread in [*threads, killer]:
            thread.start()
        time.sleep(LOAD_SECONDS)
        # On a slow machine the bots take longer to start again: the load goes on until the
        # kills the test counts on have happened.
        deadline = time.monotonic() + 90
        while (fleet.kills < 3 or fleet.worker_kills < 1) and time.monotonic() < deadline:
            time.sleep(0.5)
        stop.set()
        for thread in [*threads, killer]:
            thread.join(60)
        wait_for(lambda: all(r.health() for r in fleet.replicas), 60, "the restarted bots")

        engine = make_engine(configured)
        arrivals = arrivals_engine(engine)

        def settled() -> bool:
            with Session(engine) as session:
                waiting = session.exec(
                    select(func.count()).where(InboxEntry.status != InboxStatus.DONE)
                ).one()
            if arrivals is not None:  # SQLite: acked, not yet moved into the inbox
                with arrivals.connect() as connection:
                    waiting += connection.execute(
                        select(func.count()).select_from(ARRIVAL)
                    ).scalar_one()
            with Session(engine) as session:
                unsent = session.exec(
                    select(func.count()).where(
                        OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING])  # type: ignore[attr-defined]
                    )
                ).one()
            return waiting == 0 and unsent == 0

        wait_for(settled, 90, "the inbox and the outbox to drain")
        with Session(engine) as session:
            reports = session.exec(select(Report)).all()
            failed = session.exec(
                select(func.count()).where(OutboxMessage.status == OutboxStatus.FAILED)
            ).one()
        engine.dispose()
        assert failed == 0

        texts = Counter(report.text for report in reports)
        for text in acked_commands:
            assert texts[text] == 1, f"acked command {text!r}: {texts[text]} reports"
        for text in unacked_commands:
            assert texts[text] <= 1, f"unacked command {text!r} filed twice"
        by_ts = Counter(report.source_ts for report in reports if report.source_ts)
        for event_id, ts in events.items():
            assert by_ts[ts] == 1, f"acked event {event_id}: {by_ts[ts]} reports"

        cards = Counter(
            match.group(0)
            for message in slack.messages(LEADERSHIP)
            if not message.get("thread_ts")
            for match in [re.search(r"FB-\d+", str(message.get("text")))]
            if match
        )
        assert len(cards) == len(reports), "a card for every report"
        assert set(cards.values()) == {1}, "no card twice"

        # A response_url has no history to check, so a bot killed after Slack took the
        # receipt and before it noted that sends it again: as a replacement of the first,
        # which the person sees as one message.
        answers: dict[str, list[dict[str, object]]] = {}
        for response in slack.responses:
            answers.setdefault(str(response["_url"]), []).append(response)
        for text, url in acked_commands.items():
            sent = answers.get(url, [])
            assert sent, f"no receipt for {text!r}"
            assert all(copy == sent[0] for copy in sent), f"receipts of {text!r} differ"
            assert all(copy.get("replace_original") for copy in sent)
        receipts = Counter(
            message.get("thread_ts")
            for message in slack.messages(INTAKE)
            if message.get("thread_ts")
        )
        for ts in events.values():
            assert receipts[ts] == 1
        assert fleet.kills >= 3
        assert fleet.worker_kills >= 1
        assert len(acked_commands) + len(events) >= 20
        print(
            f"kills={fleet.kills} worker_kills={fleet.worker_kills} acked_commands={len(acked_commands)} "
            f"unacked_commands={len(unacked_commands)} events={len(events)} reports={len(reports)}"
        )
    finally:
        stop.set()
        fleet.stop()
