"""Benchmark: how fast feedbot acks `/feedback <text>` over real HTTP, next to a bare Bolt app.

Slack wants an answer to a slash command within 3 seconds. feedbot answers once the request
is stored in its inbox; its inbox workers file the report and send the receipt afterwards.
This benchmark sends signed, form-encoded `/feedback <text>` requests, shaped like Slack's,
over HTTP to feedbot's production WSGI app (`FeedbotWSGI` around `build_app`, in waitress
with the 16 threads `feedbot run` uses, the inbox workers and an outbox sender) and, in the
same run, to a bare Bolt app behind the same WSGI class and server whose `/feedback`
listener only acks. What feedbot adds to an ack over bare Bolt is the inbox write, and the
interpreter time its workers take meanwhile: validation, the report, its timeline and search
terms, similar reports, incident grouping, the card and the receipt queued in the outbox.

Each server runs in its own process (feedbot's work in a child process of it, as
`feedbot run` does; `--inbox-workers thread` for one process), with a fake Slack Web API
(`tests.fakeslack`) in a process of its own beside it, as Slack is a system of its own;
feedbot's database is fresh and migrated, with a leadership channel configured. The load comes from this process, with asyncio, one
connection per request as Slack opens them:

- closed loop with 16 requests in flight for a few seconds: the most each app can take
  (its `throughput_rps` is what the throughput ratio compares);
- open loop at 25, 50, 100 and 200 requests per second, for a few seconds each (a bounded
  number of requests; one not answered within 10 s counts as timed out), stopping after the
  first rate the app cannot sustain. Latency runs from when a request was *due* to be sent,
  so a client falling behind shows as latency instead of hiding it.

Between steps the server is given time (up to 30 s) to work off any backlog.

Then, per backend, the end-to-end step, on a server and database of its own: the steps
before leave thousands of requests in the inbox, behind which its receipts would only
measure that backlog. The database holds 5,000 earlier reports (what a similar-report
lookup reads, as in `benchmarks.filing`); after the warm-up, 100 `/feedback` requests a
second for 60 s, each receipt timed from when its request was due until it reaches the
fake Slack's `response_url`, and 30 s more for the last ones. The workers' CPU time per
report comes from this step. Their profile comes from `PROFILED_ENTRIES` requests sent
before it, at `PROFILED_RATE`, and worked off before it begins: under cProfile the work per
report takes about twice as long, which inside the timed minute delayed every receipt
after them. After the 30 s, the step watches `LATE_WATCH` more seconds for late receipts,
to tell when the backlog was really gone. `--open-homes N`: in the end-to-end step N leaders
and every reporter have their App Home open (`benchmarks.filing.homes_opened`), as in a
running workspace, so the Homes follow the reports; by default nobody's is.

One JSON line per step and app, then one summary per database backend:

    {"benchmark": "intake", "app": "feedbot", "backend": "sqlite", "mode": "open",
     "rate": 50, "requests": 250, "ok": 250, "p50_ms": 10.1, "p99_ms": 28.9, ...}
    {"benchmark": "intake", "summary": true, "backend": "sqlite", "throughput_ratio": 0.06,
     "p99_ms_at_100": 9998.7, "meets_targets": false, ...}

Targets: feedbot's saturated throughput at least half the bare app's, and p99 ack latency
under 100 ms at 100 requests/s, on SQLite and PostgreSQL. The bare app is measured once per
run and compared with both backends.

Usage: python -m benchmarks.intake [--backend sqlite|postgresql|both] [--step-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import hmac
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from benchmarks import (
    BACKENDS,
    emit,
    fresh_database,
    load_average,
    percentile,
    report_texts,
    rounded,
    setup_logging,
)

log = setup_logging()

SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
TOKEN = "xoxb-bench-token"
SECRET_KEY = "bench-secret-key-that-seals-anonymous-people-0123"
LEADERSHIP = "CBENCHLEAD"
USERS = [f"UBENCH{index:04d}" for index in range(100)]
HOME_LEADERS = [f"UBENCHLEAD{index:02d}" for index in range(20)]
"""Leaders known to the fake Slack: `--open-homes` makes the first ones watch their Home."""
RATES = (25, 50, 100, 200)
CONCURRENCY = 16
TIMEOUT = 10.0
SERVER_THREADS = 16
"""waitress threads, as `feedbot.slack.server.serve` sets them."""
RESPONSE_URLS = 60_000
"""Response URLs the fake Slack knows; requests use them in turn (the end-to-end step's
each once)."""
PROFILED_ENTRIES, PROFILED_RATE, PROFILED_SETTLE = 500, 50, 60.0
"""Requests filed under cProfile before the end-to-end step (and not timed), for the profile;
the most seconds the step waits for them to be filed."""
LATE_WATCH = 30.0
"""Seconds the end-to-end step's server runs on after its drain window: receipts that come
then are counted as late, and say when the backlog was gone."""
SUSTAIN_RATE, SUSTAIN_SECONDS = 200, 30.0
END_TO_END_RATE, END_TO_END_SECONDS, DRAIN_LIMIT = 100, 60.0, 30.0
EARLIER_REPORTS = 5000
"""Reports already in the end-to-end step's database (as in `benchmarks.filing`)."""


# --------------------------------------------------------------------------- the servers


def fake_slack(urls_file: str) -> None:
    """Child process: the fake Slack Web API, its address printed on stdout, in a process of
    its own as Slack is a system of its own (its work must not count against the app's).
    Its `response_url`s are written to `urls_file` for the client's commands. When stdin
    closes it prints (one JSON line) when each response URL got its first answer."""
    from tests.fakeslack import FakeSlack

    fake = FakeSlack(token=TOKEN).start()
    for index, user in enumerate([*USERS, *HOME_LEADERS]):
        fake.add_user(user, locale="de-DE" if index % 3 else "en-US")
    fake.add_channel(LEADERSHIP, name="leadership")
    with open(urls_file, "w") as handle:
        json.dump([fake.new_response_url() for _ in range(RESPONSE_URLS)], handle)
    arrivals: dict[str, float] = {}
    watching = threading.Event()

    def watch() -> None:  # when each response URL first got its answer (wall clock)
        seen = 0
        while not watching.wait(0.005):
            with fake._lock:
                fresh = fake.responses[seen:]
            seen += len(fresh)
            now = time.time()
            for response in fresh:
                arrivals.setdefault(str(response["_url"]), now)

    threading.Thread(target=watch, name="arrivals", daemon=True).start()
    print(fake.base_url, flush=True)
    sys.stdin.read()
    watching.set()
    time.sleep(0.01)
    refused = {
        "slack_429s": dict(fake.rate_limited_by),
        "refused_responses": len(fake.refused_responses),
    }
    print(json.dumps({"arrivals": arrivals, **refused}), flush=True)


def serve(kind: str, database_url: str, api_url: str, profiled_from: str = "-1") -> None:
    """Child process: one app in waitress on a free port, printed on stdout; stops when stdin
    closes, then prints how many reports and outbox entries the database holds, and (one JSON
    line) what each report cost the worker. From the `profiled_from`th inbox entry on (none
    when negative), `PROFILED_ENTRIES` are handled under cProfile.

    feedbot runs as `feedbot run` does: the inbox, its workers and the outbox sender in a
    child process of their own (or in threads, `feedbot-thread`), delivering to the fake
    Slack at `api_url`."""
    from slack_bolt import Ack, App
    from slack_sdk import WebClient
    from sqlalchemy import func, select
    from waitress.server import create_server

    from feedbot.db import arrivals_engine, make_engine
    from feedbot.models import ARRIVAL, InboxEntry, OutboxMessage
    from feedbot.slack.app import build_app
    from feedbot.slack.client import make_interactive_client
    from feedbot.slack.deps import Deps
    from feedbot.slack.inbox import Inbox
    from feedbot.slack.server import FeedbotWSGI
    from feedbot.slack.work import Work
    from feedbot.worker_process import WorkerProcess

    # waitress warns at every queued task, and at its connection limit, once the load passes
    # what its threads take: that is what the latencies show.
    logging.getLogger("waitress").setLevel(logging.ERROR)
    engine = make_engine(database_url)
    settings = _settings(database_url, api_url)
    costs: list[float] = []
    profiles: list[cProfile.Profile] = []
    workers: WorkerProcess | None = None
    results_file = str(Path(tempfile.gettempdir()) / f"feedbot-bench-work-{os.getpid()}.json")
    if kind == "feedbot":  # as `feedbot run` does: the work in a child process
        deps = Deps(settings=settings, engine=engine, client=make_interactive_client(settings))
        command = [sys.executable, "-m", "benchmarks.intake", "--work", database_url]
        workers = WorkerProcess([*command, api_url, results_file, profiled_from])
        deps.on_commit = workers.wake_senders
        app = build_app(settings, engine, deps=deps, inbox=Inbox(deps, elsewhere=workers))
        workers.start()
    elif kind == "feedbot-thread":  # `INBOX_WORKERS=thread`
        deps = Deps(settings=settings, engine=engine, client=make_interactive_client(settings))
        in_process = Work.assemble(deps)
        app = build_app(settings, engine, deps=deps, inbox=in_process.inbox)
        _measure_worker(in_process.inbox, costs, profiles, _profiled(profiled_from))
        in_process.start()
    else:
        app = App(
            client=WebClient(token=TOKEN, base_url=api_url),
            signing_secret=SIGNING_SECRET,
            process_before_response=True,
            name="bare",
        )

        def acknowledge(ack: Ack) -> None:
            ack()

        app.command("/feedback")(acknowledge)
    server: Any = create_server(
        FeedbotWSGI(app, engine, signing_secret=SIGNING_SECRET),
        host="127.0.0.1",
        port=0,
        threads=SERVER_THREADS,
        ident="feedbot-bench",
    )
    threading.Thread(target=server.run, name="waitress", daemon=True).start()
    print(server.effective_port, flush=True)
    sys.stdin.read()
    if workers is not None:
        workers.stop()
    with engine.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(InboxEntry)).scalar_one()
        queued = connection.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
    arrivals = arrivals_engine(engine)
    if arrivals is not None:  # SQLite: stored, not yet moved into the inbox
        with arrivals.connect() as connection:
            stored += connection.execute(select(func.count()).select_from(ARRIVAL)).scalar_one()
    print(f"{stored} {queued}", flush=True)
    work: dict[str, Any] = {"costs": costs, "profile": _top(profiles)}
    if workers is not None:
        with contextlib.suppress(OSError, ValueError):
            work = json.loads(Path(results_file).read_text())
        Path(results_file).unlink(missing_ok=True)
    print(json.dumps(work), flush=True)


def _settings(database_url: str, api_url: str) -> Any:
    """feedbot's settings in the server and in its workers' process."""
    from pydantic import SecretStr

    from feedbot.settings import Settings

    return Settings(
        slack_bot_token=SecretStr(TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_api_url=api_url,
        database_url=database_url,
        feedbot_secret_key=SecretStr(SECRET_KEY),
        _env_file=None,  # type: ignore[call-arg]
    )


def _profiled(first: str) -> range:
    start = int(first)
    return range(start, start + PROFILED_ENTRIES) if start >= 0 else range(0)


def _measure_worker(
    inbox: Any, costs: list[float], profiles: list[cProfile.Profile], profiled: range
) -> None:
    """Record the CPU time of a worker thread per entry in `costs`; the entries in `profiled`
    (by their number) run under cProfile instead (and are left out of the times), one thread
    at a time (the others measure meanwhile), each profile kept in `profiles` (a look that
    found nothing to handle is not); `costs` holds -1 for each profiled entry."""
    handle_one = inbox.handle_one
    profiling = threading.Lock()

    def measured() -> bool:
        profile = (
            cProfile.Profile() if len(costs) in profiled and profiling.acquire(False) else None
        )
        if profile is not None:
            profile.enable()
        started = time.thread_time()
        handled = handle_one()
        spent = time.thread_time() - started
        if profile is not None:
            profile.disable()
            profiling.release()
            if handled:
                profiles.append(profile)
        if handled:
            costs.append(-1.0 if profile is not None else spent)
        return bool(handled)

    inbox.handle_one = measured


def work(
    database_url: str, api_url: str, results_file: str, profiled_from: str, *, report_fd: int
) -> None:
    """Child process of a feedbot server: its inbox workers, as `feedbot inbox-worker` runs
    them, measured; writes the costs and the profile to `results_file` when told to quit."""
    from feedbot.db import make_engine
    from feedbot.slack.app import build_app
    from feedbot.slack.client import make_interactive_client
    from feedbot.slack.deps import Deps
    from feedbot.slack.work import Work
    from feedbot.worker_process import ParentLink

    ParentLink.yield_cpu()
    engine = make_engine(database_url)
    settings = _settings(database_url, api_url)
    deps = Deps(settings=settings, engine=engine, client=make_interactive_client(settings))
    work = Work.assemble(deps, only_work=True)
    build_app(settings, engine, deps=deps, inbox=work.inbox)
    costs: list[float] = []
    profiles: list[cProfile.Profile] = []
    _measure_worker(work.inbox, costs, profiles, _profiled(profiled_from))
    stopped = threading.Event()
    link = ParentLink(
        report_fd, on_wake=work.inbox.wake, on_send=work.wake_senders, on_quit=stopped.set
    )
    work.start()
    link.start()
    stopped.wait()
    work.stop()
    Path(results_file).write_text(json.dumps({"costs": costs, "profile": _top(profiles)}))


def _top(profiles: list[cProfile.Profile], count: int = 15) -> list[str]:
    """The functions that took the most time of their own, per profiled entry."""
    import pstats

    if not profiles:
        return []
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    entries = len(profiles)
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    return [
        f"{tottime / entries * 1000:.3f} ms own, {cumtime / entries * 1000:.3f} ms with callees: "
        f"{Path(file).name}:{line} {name}"
        for (file, line, name), (_, _, tottime, cumtime, _) in rows[:count]
    ]


def _child(*arguments: str) -> tuple[subprocess.Popen[str], str]:
    """A child process of this module and the first line it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.intake", *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line:
        process.kill()
        raise RuntimeError(f"{' '.join(arguments)} did not start")
    return process, line


def _finish(process: subprocess.Popen[str]) -> list[str]:
    """Close a child's stdin and return what it printed after its first line."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    lines = process.stdout.read().splitlines()
    process.wait(60)
    return lines


@dataclass
class Server:
    """A server child process and its port, and the fake Slack's process beside it."""

    process: subprocess.Popen[str]
    port: int
    slack: subprocess.Popen[str]

    urls: list[str] = field(default_factory=list)
    database_url: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, kind: str, database_url: str, *, profiled_from: int = -1) -> Server:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            urls_file = handle.name
        slack, api_url = _child("--slack", urls_file)
        try:
            process, port = _child("--serve", kind, database_url, api_url, str(profiled_from))
        except Exception:
            _finish(slack)
            raise
        with open(urls_file) as handle:
            urls = json.load(handle)
        Path(urls_file).unlink()
        return cls(process, int(port), slack, urls, database_url)

    def stop(self) -> tuple[int, int]:
        """Stop it; returns (requests stored, outbox entries) in its database."""
        lines = _finish(self.process)
        counts = lines[0].split() if lines else []
        if len(lines) > 1:
            self.details = json.loads(lines[1])
        arrivals = _finish(self.slack)
        if arrivals:
            self.details.update(json.loads(arrivals[0]))
        return (int(counts[0]), int(counts[1])) if len(counts) == 2 else (-1, -1)


# --------------------------------------------------------------------------- the load


def command_form(index: int, user: str, text: str, response_url: str) -> dict[str, str]:
    """The form of a `/feedback <text>` request, as Slack sends it and Bolt parses it."""
    return {
        "token": "legacy-verification-token",
        "team_id": "T0TEAM",
        "team_domain": "frontline",
        "channel_id": "CGENERAL1",
        "channel_name": "general",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/feedback",
        "text": text,
        "api_app_id": "A0FEEDBOT",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"{index}.1337.bench",
    }


@dataclass
class Requests:
    """Signed `/feedback <text>` requests as raw HTTP, one connection each."""

    port: int
    urls: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    texts: list[tuple[str, str]] = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.texts = report_texts(self.rng, 2000)

    def url(self) -> str:
        """This request's response URL (the fake's, when it gave some)."""
        if not self.urls:
            return f"https://hooks.slack.com/commands/T0TEAM/{self.count}/x"
        return self.urls[(self.count - 1) % len(self.urls)]

    def next(self, user: str | None = None) -> bytes:
        self.count += 1
        user = user or self.rng.choice(USERS)
        form = command_form(self.count, user, self.rng.choice(self.texts)[0], self.url())
        body = urlencode(form).encode()
        timestamp = str(int(time.time()))
        digest = hmac.new(
            SIGNING_SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256
        ).hexdigest()
        head = (
            "POST /slack/events HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n"
            "User-Agent: Slackbot 1.0 (+https://api.slack.com/robots)\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Slack-Request-Timestamp: {timestamp}\r\n"
            f"X-Slack-Signature: v0={digest}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + body


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: dict[str, int] = field(default_factory=dict)
    last_done: float = 0.0
    send_lag: float = 0.0  # how late the client sent its latest request, at worst

    def failed(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


async def _exchange(port: int, raw: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    return int(answer[9:12]) if answer.startswith(b"HTTP/1.") else 0


async def _timed(port: int, raw: bytes, due: float, outcome: Outcome) -> None:
    loop = asyncio.get_running_loop()
    outcome.send_lag = max(outcome.send_lag, loop.time() - due)
    try:
        status = await asyncio.wait_for(_exchange(port, raw), TIMEOUT)
    except TimeoutError:
        outcome.failed("timeout")
        return
    except OSError as exc:
        outcome.failed(type(exc).__name__)
        return
    done = loop.time()
    if status == 200:
        outcome.latencies.append(done - due)
        outcome.last_done = max(outcome.last_done, done)
    else:
        outcome.failed(f"http_{status}")


async def open_loop(requests: Requests, rate: float, seconds: float) -> tuple[Outcome, float]:
    """`rate` requests per second for `seconds`, whatever the answers; returns the outcome and
    when sending began (loop time)."""
    loop = asyncio.get_running_loop()
    total = round(rate * seconds)
    prepared = [requests.next() for _ in range(total)]
    outcome = Outcome()
    start = loop.time() + 0.05
    tasks = []
    for index, raw in enumerate(prepared):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_timed(requests.port, raw, due, outcome)))
    await asyncio.gather(*tasks)
    return outcome, start


async def closed_loop(
    requests: Requests, concurrency: int, seconds: float
) -> tuple[Outcome, float]:
    """`concurrency` clients, each sending its next request as soon as the last one answered."""
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    start = loop.time()
    stop_at = start + seconds

    async def client() -> None:
        while loop.time() < stop_at:
            await _timed(requests.port, requests.next(), loop.time(), outcome)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return outcome, start


async def settle(port: int, limit: float = 30.0) -> float:
    """Wait until the server has worked off any backlog: `/healthz` answers in under 50 ms
    twice in a row. Returns the seconds waited."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    quick = 0
    probe = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    while quick < 2 and loop.time() - start < limit:
        sent = loop.time()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(_exchange(port, probe.encode()), limit)
        quick = quick + 1 if loop.time() - sent < 0.05 else 0
        await asyncio.sleep(0.2)
    return loop.time() - start


def summarise(outcome: Outcome, start: float, sent: int) -> dict[str, Any]:
    ok = len(outcome.latencies)
    elapsed = outcome.last_done - start if ok else 0.0
    ms = [latency * 1000 for latency in outcome.latencies]
    return {
        "requests": sent,
        "ok": ok,
        "errors": outcome.errors,
        "throughput_rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": rounded(percentile(ms, 50), 1),
        "p90_ms": rounded(percentile(ms, 90), 1),
        "p99_ms": rounded(percentile(ms, 99), 1),
        "max_ms": rounded(max(ms), 1) if ms else None,
        "max_send_lag_ms": round(outcome.send_lag * 1000, 1),
    }


def run_app(
    app: str,
    backend: str,
    server: Server,
    step_seconds: float,
    saturation_seconds: float,
    sustain_seconds: float = SUSTAIN_SECONDS,
) -> tuple[list[dict[str, Any]], int]:
    """Warm up, then the closed loop, then the open-loop rates from the lowest up; returns
    the records and how many requests were answered 200.

    The closed loop goes first because it cannot leave a backlog behind. Rates above the
    first one the app cannot sustain (timeouts, or under 90% of the offered rate answered
    per second) are skipped: they would only queue more work in waitress, which the server
    keeps doing after the client gave up, and tell nothing new."""
    port = server.port
    requests = Requests(port, urls=server.urls)
    records: list[dict[str, Any]] = []
    answered = 0

    def record(
        mode: str, outcome: Outcome, start: float, sent: int, **extra: Any
    ) -> dict[str, Any]:
        nonlocal answered
        answered += len(outcome.latencies)
        entry = {"benchmark": "intake", "app": app, "backend": backend, "mode": mode, **extra}
        entry.update(summarise(outcome, start, sent), load_average=load_average())
        records.append(entry)
        emit(entry)
        return entry

    def settled() -> None:
        waited = asyncio.run(settle(port))
        if waited > 1:
            log.info("intake/%s/%s: backlog worked off in %.0f s", app, backend, waited)

    # Warm-up: one request per user (their profiles get cached, as in a running bot).
    before = requests.count
    outcome, _ = asyncio.run(_warm_up(requests))
    answered += len(outcome.latencies)
    log.info("intake/%s/%s: warmed up with %s requests", app, backend, requests.count - before)
    before = requests.count
    outcome, start = asyncio.run(closed_loop(requests, CONCURRENCY, saturation_seconds))
    record(
        "saturation", outcome, start, requests.count - before, concurrency=CONCURRENCY, rate=None
    )
    settled()
    for index, rate in enumerate(RATES):
        before = requests.count
        outcome, start = asyncio.run(open_loop(requests, rate, step_seconds))
        entry = record("open", outcome, start, requests.count - before, rate=rate)
        settled()
        if entry["ok"] < entry["requests"] or entry["throughput_rps"] < 0.9 * rate:
            for higher in RATES[index + 1 :]:
                skipped: dict[str, Any] = {
                    "benchmark": "intake",
                    "app": app,
                    "backend": backend,
                    "mode": "open",
                    "rate": higher,
                    "skipped": f"overloaded at {rate}/s",
                }
                records.append(skipped)
                emit(skipped)
            break
    # The ack target: a steady SUSTAIN_RATE for half a minute, none over Slack's 3 s.
    before = requests.count
    outcome, start = asyncio.run(open_loop(requests, SUSTAIN_RATE, sustain_seconds))
    entry = record("sustained", outcome, start, requests.count - before, rate=SUSTAIN_RATE)
    entry["over_3s"] = sum(1 for latency in outcome.latencies if latency > 3.0) + sum(
        outcome.errors.values()
    )
    settled()
    return records, answered


def run_end_to_end(
    backend: str, server: Server, seconds: float
) -> tuple[dict[str, Any], dict[str, float]]:
    """The end-to-end step on a server of its own: its database holds `EARLIER_REPORTS`
    reports (what a lookup reads), its inbox is empty, and `END_TO_END_RATE` `/feedback`
    requests a second for `seconds` go out after the warm-up. Returns the step's record and
    when each request was due, by its response URL."""
    requests = Requests(server.port, urls=server.urls)
    warm_up, _ = asyncio.run(_warm_up(requests))
    if requests.count + END_TO_END_RATE * seconds + PROFILED_ENTRIES > len(server.urls):
        raise RuntimeError("not enough response URLs for the end-to-end step")
    # The profile's entries, before the timed ones and worked off first (`PROFILED_ENTRIES`):
    # the worker counts its entries to know which to profile, so every one must be stored.
    profiled, _ = asyncio.run(open_loop(requests, PROFILED_RATE, PROFILED_ENTRIES / PROFILED_RATE))
    if warm_up.errors or profiled.errors:
        raise RuntimeError(f"requests before the end-to-end step failed: {profiled.errors}")
    _wait_until_worked_off(server.database_url, PROFILED_SETTLE)
    before = requests.count
    outcome, start, sent = asyncio.run(end_to_end(requests, END_TO_END_RATE, seconds))
    entry = {
        "benchmark": "intake",
        "app": "feedbot",
        "backend": backend,
        "mode": "end_to_end",
        "rate": END_TO_END_RATE,
    }
    entry.update(summarise(outcome, start, requests.count - before), load_average=load_average())
    emit(entry)
    time.sleep(DRAIN_LIMIT + 2)  # what is not delivered by then missed the target
    time.sleep(LATE_WATCH)  # late receipts, counted apart
    return entry, sent


def _wait_until_worked_off(database_url: str, limit: float) -> None:
    """Wait until the server's inbox (with its arrivals) is empty; fail after `limit` seconds.
    (Not its outbox: the leadership channel's cards go at Slack's pace of one a second.)"""
    from sqlmodel import Session

    from feedbot.core import inbox
    from feedbot.db import make_engine
    from feedbot.models import utcnow

    engine = make_engine(database_url)
    deadline = time.monotonic() + limit
    try:
        while True:
            with Session(engine) as session:
                waiting = inbox.depth(session, now=utcnow()).pending
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{waiting} requests not filed after {limit:.0f} s")
            time.sleep(0.5)
    finally:
        engine.dispose()


async def end_to_end(
    requests: Requests, rate: float, seconds: float
) -> tuple[Outcome, float, dict[str, float]]:
    """Like `open_loop`, noting when each request was due (wall clock) by its response URL,
    to time its receipt's arrival at the fake Slack."""
    loop = asyncio.get_running_loop()
    total = round(rate * seconds)
    prepared = []
    for _ in range(total):
        raw = requests.next()
        prepared.append((requests.url(), raw))
    outcome = Outcome()
    start = loop.time() + 0.05
    offset = time.time() - loop.time()
    sent: dict[str, float] = {}
    tasks = []
    for index, (url, raw) in enumerate(prepared):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[url] = due + offset
        tasks.append(asyncio.create_task(_timed(requests.port, raw, due, outcome)))
    await asyncio.gather(*tasks)
    return outcome, start, sent


async def _warm_up(requests: Requests) -> tuple[Outcome, float]:
    outcome = Outcome()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for user in USERS:
        await _timed(requests.port, requests.next(user), loop.time(), outcome)
    return outcome, start


def configure(url: str) -> None:
    """The leadership channel, so every report gets its card queued, and no limit on how
    many reports one person files (a hundred people send thousands here)."""
    from feedbot.core.config import set_value
    from feedbot.db import make_engine, session_scope

    engine = make_engine(url)
    with session_scope(engine) as session:
        set_value(session, key="leadership_channel", raw=LEADERSHIP, actor="benchmark")
        set_value(session, key="report_rate_limit", raw="0", actor="benchmark")
    engine.dispose()


def measure(
    backends: tuple[str, ...],
    step_seconds: float,
    saturation_seconds: float,
    sustain_seconds: float = SUSTAIN_SECONDS,
    end_to_end_seconds: float = END_TO_END_SECONDS,
    inbox_workers: str = "process",
    open_homes: int = 0,
) -> None:
    """The bare app once, then feedbot on each backend, each followed by its summary."""
    from benchmarks.filing import homes_opened
    from benchmarks.similar import fill

    kind = "feedbot" if inbox_workers == "process" else "feedbot-thread"
    results: dict[str, list[dict[str, Any]]] = {}
    with fresh_database("sqlite") as scratch:  # the bare app touches no database
        server = Server.start("bare", scratch)
        try:
            results["bare"], _ = run_app(
                "bare", "none", server, step_seconds, saturation_seconds, sustain_seconds
            )
        finally:
            server.stop()
    for backend in backends:
        with fresh_database(backend) as url:
            configure(url)
            server = Server.start(kind, url)
            try:
                records, answered = run_app(
                    "feedbot", backend, server, step_seconds, saturation_seconds, sustain_seconds
                )
            finally:
                stored, queued = server.stop()
        sent: dict[str, float] = {}
        details: dict[str, Any] = {}
        if end_to_end_seconds > 0:
            with fresh_database(backend) as url:
                fill(backend, url, EARLIER_REPORTS)
                configure(url)
                if open_homes:
                    homes_opened(url, HOME_LEADERS[:open_homes], USERS)
                server = Server.start(kind, url, profiled_from=len(USERS))
                try:
                    entry, sent = run_end_to_end(backend, server, end_to_end_seconds)
                    records.append(entry)
                finally:
                    server.stop()
                details = server.details
        summary = _summary(backend, records, results["bare"], answered, stored, queued)
        summary.update(_end_to_end(sent, details, records))
        summary["inbox_workers"] = inbox_workers
        summary["open_homes"] = open_homes
        summary["meets_targets"] = all(summary["targets"].values()) and all(
            summary["targets_end_to_end"].values()
        )
        emit(summary)


def _end_to_end(
    sent: dict[str, float], details: dict[str, Any], records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Receipts of the end-to-end step: how long each took to reach the fake Slack, how many
    did within the drain limit (and how many only later), when the last one came, and what
    each report cost the worker."""
    arrivals: dict[str, float] = details.get("arrivals", {})
    last_request = max(sent.values(), default=0.0)
    # Receipts that came later than the step allows are not counted (the server runs on for
    # `LATE_WATCH`), but say when the backlog was gone.
    cutoff = last_request + DRAIN_LIMIT + 2
    delays = [
        arrivals[url] - due for url, due in sent.items() if arrivals.get(url, cutoff + 1) <= cutoff
    ]
    arrived = [arrivals[url] for url in sent if url in arrivals]
    last_arrival = max(arrived, default=0.0)
    costs = [cost * 1000 for cost in details.get("costs", []) if cost >= 0]
    sustained = next((r for r in records if r.get("mode") == "sustained"), {})
    p99 = percentile([d * 1000 for d in delays], 99)
    drained = last_arrival - last_request if arrived else None
    cpu = percentile(costs, 50)
    extra = {
        "sustained_p99_ms": sustained.get("p99_ms"),
        "sustained_over_3s": sustained.get("over_3s"),
        "end_to_end_requests": len(sent),
        "end_to_end_receipts": len(delays),
        "end_to_end_receipts_late": len(arrived) - len(delays),
        "end_to_end_receipt_p99_ms": rounded(p99, 1),
        "end_to_end_drained_after_s": round(drained, 1) if drained is not None else None,
        "worker_cpu_ms_per_report_p50": rounded(cpu, 2),
        "worker_cpu_ms_per_report_mean": rounded(sum(costs) / len(costs), 2) if costs else None,
        "profile_per_report": details.get("profile", []),
        # Over the whole run: calls Slack's limits refused, per method, and receipts whose
        # response_url no longer took them (they came by DM).
        "slack_429s": details.get("slack_429s", {}),
        "refused_responses": details.get("refused_responses", 0),
    }
    targets = {
        "sustained_p99_ms < 100": bool(sustained.get("p99_ms") is not None)
        and sustained["p99_ms"] < 100,
        "sustained none over 3 s": sustained.get("over_3s") == 0,
        "receipts p99 < 5 s": p99 is not None and p99 < 5000 and len(delays) == len(sent),
        "drained within 30 s": drained is not None
        and drained <= DRAIN_LIMIT
        and len(arrived) == len(sent),
        "cpu per report <= 3 ms": cpu is not None and cpu <= 3.0,
    }
    extra["targets_end_to_end"] = targets
    return extra


def _summary(
    backend: str,
    feedbot: list[dict[str, Any]],
    bare: list[dict[str, Any]],
    answered: int,
    stored: int,
    queued: int,
) -> dict[str, Any]:
    def find(records: list[dict[str, Any]], match: Callable[[dict[str, Any]], bool]) -> Any:
        return next(record for record in records if match(record))

    saturated = find(feedbot, lambda r: r["mode"] == "saturation")
    bare_saturated = find(bare, lambda r: r["mode"] == "saturation")
    at_100 = find(feedbot, lambda r: r["mode"] == "open" and r["rate"] == 100)
    ratio = (
        saturated["throughput_rps"] / bare_saturated["throughput_rps"]
        if bare_saturated["throughput_rps"]
        else 0.0
    )
    p99 = at_100.get("p99_ms")
    bare_open = {r["rate"]: r.get("throughput_rps") for r in bare if r["mode"] == "open"}
    by_rate = {
        str(r["rate"]): round(r["throughput_rps"] / bare_open[r["rate"]], 3)
        for r in feedbot
        if r["mode"] == "open" and "throughput_rps" in r and bare_open.get(r["rate"])
    }
    targets = {
        "throughput_ratio >= 0.5": ratio >= 0.5,
        "p99_ms_at_100 < 100": p99 is not None
        and p99 < 100
        and at_100.get("ok") == at_100.get("requests"),
    }
    return {
        "benchmark": "intake",
        "summary": True,
        "backend": backend,
        "feedbot_max_rps": saturated["throughput_rps"],
        "bare_max_rps": bare_saturated["throughput_rps"],
        "throughput_ratio": round(ratio, 3),
        "throughput_ratio_by_rate": by_rate,
        "p99_ms_at_100": p99,
        "bare_p99_ms_at_100": find(bare, lambda r: r["mode"] == "open" and r["rate"] == 100).get(
            "p99_ms"
        ),
        "answered": answered,
        "requests_stored": stored,
        "stored_but_not_answered": stored - answered,
        "outbox_entries": queued,
        "targets": targets,
        "meets_targets": all(targets.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--saturation-seconds", type=float, default=6.0)
    parser.add_argument("--sustain-seconds", type=float, default=SUSTAIN_SECONDS)
    parser.add_argument("--end-to-end-seconds", type=float, default=END_TO_END_SECONDS)
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--slack", help=argparse.SUPPRESS)
    parser.add_argument(
        "--inbox-workers",
        choices=("process", "thread"),
        default="process",
        help="feedbot's inbox workers in a child process (as `feedbot run`) or a thread",
    )
    parser.add_argument(
        "--open-homes",
        type=int,
        default=0,
        metavar="LEADERS",
        help=f"leaders (at most {len(HOME_LEADERS)}) and reporters watching their Home",
    )
    parser.add_argument("--work", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 <= args.open_homes <= len(HOME_LEADERS):
        parser.error(f"--open-homes: from 0 to {len(HOME_LEADERS)} leaders")
    if args.work:
        work(*args.work, report_fd=args.report_fd)
        return
    if args.slack:
        fake_slack(args.slack)
        return
    if args.serve:
        serve(*args.serve)
        return
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    measure(
        backends,
        args.step_seconds,
        args.saturation_seconds,
        args.sustain_seconds,
        args.end_to_end_seconds,
        args.inbox_workers,
        open_homes=args.open_homes,
    )


if __name__ == "__main__":
    main()
