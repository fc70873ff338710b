"""Benchmark: how fast feedbot acks `/feedback <text>` over real HTTP, next to a bare Bolt app.

Slack wants an answer to a slash command within 3 seconds, and feedbot answers only after the
report is stored and its messages queued (`process_before_response=True`). This benchmark
sends signed, form-encoded `/feedback <text>` requests, shaped like Slack's, over HTTP to
feedbot's production WSGI app (`FeedbotWSGI` around `build_app`, in waitress with the 16
threads `feedbot run` uses) and, in the same run, to a bare Bolt app behind the same WSGI
class and server whose `/feedback` listener only acks. What feedbot adds over bare Bolt is
the cost of its work: validation, the report, its timeline and search terms, similar reports
for the receipt, the card queued in the outbox.

Each server runs in its own process, with a fake Slack Web API (`tests.fakeslack`) in that
process so `auth.test` and `users.info` answer; feedbot's database is fresh and migrated, with
a leadership channel configured. The load comes from this process, with asyncio, one
connection per request as Slack opens them:

- closed loop with 16 requests in flight for a few seconds: the most each app can take
  (its `throughput_rps` is what the throughput ratio compares);
- open loop at 25, 50, 100 and 200 requests per second, for a few seconds each (a bounded
  number of requests; one not answered within 10 s counts as timed out), stopping after the
  first rate the app cannot sustain. Latency runs from when a request was *due* to be sent,
  so a client falling behind shows as latency instead of hiding it.

Between steps the server is given time (up to 30 s) to work off any backlog.

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
import hashlib
import hmac
import logging
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
LEADERSHIP = "CBENCHLEAD"
USERS = [f"UBENCH{index:04d}" for index in range(100)]
RATES = (25, 50, 100, 200)
CONCURRENCY = 16
TIMEOUT = 10.0
SERVER_THREADS = 16
"""waitress threads, as `feedbot.slack.server.serve` sets them."""


# --------------------------------------------------------------------------- the servers


def serve(kind: str, database_url: str) -> None:
    """Child process: one app in waitress on a free port, printed on stdout; stops when stdin
    closes, then prints how many reports and outbox entries the database holds."""
    from pydantic import SecretStr
    from slack_bolt import Ack, App
    from slack_sdk import WebClient
    from sqlalchemy import func, select
    from waitress.server import create_server

    from feedbot.db import make_engine
    from feedbot.models import OutboxMessage, Report
    from feedbot.settings import Settings
    from feedbot.slack.app import build_app
    from feedbot.slack.client import make_interactive_client
    from feedbot.slack.server import FeedbotWSGI
    from tests.fakeslack import FakeSlack

    # waitress warns at every queued task, and at its connection limit, once the load passes
    # what its threads take: that is what the latencies show.
    logging.getLogger("waitress").setLevel(logging.ERROR)
    fake = FakeSlack(token=TOKEN).start()
    for index, user in enumerate(USERS):
        fake.add_user(user, locale="de-DE" if index % 3 else "en-US")
    fake.add_channel(LEADERSHIP, name="leadership")
    engine = make_engine(database_url)
    settings = Settings(
        slack_bot_token=SecretStr(TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_api_url=fake.base_url,
        database_url=database_url,
        _env_file=None,  # type: ignore[call-arg]
    )
    if kind == "feedbot":
        app = build_app(settings, engine, client=make_interactive_client(settings))
    else:
        app = App(
            client=WebClient(token=TOKEN, base_url=fake.base_url),
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
    with engine.connect() as connection:
        reports = connection.execute(select(func.count()).select_from(Report)).scalar_one()
        queued = connection.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
    print(f"{reports} {queued}", flush=True)


@dataclass
class Server:
    """A server child process and its port."""

    process: subprocess.Popen[str]
    port: int

    @classmethod
    def start(cls, kind: str, database_url: str) -> Server:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.intake", "--serve", kind, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip():
            process.kill()
            raise RuntimeError(f"the {kind} server did not start")
        return cls(process, int(line))

    def stop(self) -> tuple[int, int]:
        """Stop it; returns (reports, outbox entries) in its database."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        counts = self.process.stdout.read().split()
        self.process.wait(30)
        return (int(counts[0]), int(counts[1])) if len(counts) == 2 else (-1, -1)


# --------------------------------------------------------------------------- the load


@dataclass
class Requests:
    """Signed `/feedback <text>` requests as raw HTTP, one connection each."""

    port: int
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    texts: list[tuple[str, str]] = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.texts = report_texts(self.rng, 2000)

    def next(self, user: str | None = None) -> bytes:
        self.count += 1
        user = user or self.rng.choice(USERS)
        form = {
            "token": "legacy-verification-token",
            "team_id": "T0TEAM",
            "team_domain": "frontline",
            "channel_id": "CGENERAL1",
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/feedback",
            "text": self.rng.choice(self.texts)[0],
            "api_app_id": "A0FEEDBOT",
            "is_enterprise_install": "false",
            "response_url": f"https://hooks.slack.com/commands/T0TEAM/{self.count}/x",
            "trigger_id": f"{self.count}.1337.bench",
        }
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
    app: str, backend: str, port: int, step_seconds: float, saturation_seconds: float
) -> tuple[list[dict[str, Any]], int]:
    """Warm up, then the closed loop, then the open-loop rates from the lowest up; returns
    the records and how many requests were answered 200.

    The closed loop goes first because it cannot leave a backlog behind. Rates above the
    first one the app cannot sustain (timeouts, or under 90% of the offered rate answered
    per second) are skipped: they would only queue more work in waitress, which the server
    keeps doing after the client gave up, and tell nothing new."""
    requests = Requests(port)
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
    return records, answered


async def _warm_up(requests: Requests) -> tuple[Outcome, float]:
    outcome = Outcome()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for user in USERS:
        await _timed(requests.port, requests.next(user), loop.time(), outcome)
    return outcome, start


def configure(url: str) -> None:
    """The leadership channel, so every report gets its card queued."""
    from feedbot.core.config import set_value
    from feedbot.db import make_engine, session_scope

    engine = make_engine(url)
    with session_scope(engine) as session:
        set_value(session, key="leadership_channel", raw=LEADERSHIP, actor="benchmark")
    engine.dispose()


def measure(backends: tuple[str, ...], step_seconds: float, saturation_seconds: float) -> None:
    """The bare app once, then feedbot on each backend, each followed by its summary."""
    results: dict[str, list[dict[str, Any]]] = {}
    with fresh_database("sqlite") as scratch:  # the bare app touches no database
        server = Server.start("bare", scratch)
        try:
            results["bare"], _ = run_app(
                "bare", "none", server.port, step_seconds, saturation_seconds
            )
        finally:
            server.stop()
    for backend in backends:
        with fresh_database(backend) as url:
            configure(url)
            server = Server.start("feedbot", url)
            try:
                records, answered = run_app(
                    "feedbot", backend, server.port, step_seconds, saturation_seconds
                )
            finally:
                reports, queued = server.stop()
        emit(_summary(backend, records, results["bare"], answered, reports, queued))


def _summary(
    backend: str,
    feedbot: list[dict[str, Any]],
    bare: list[dict[str, Any]],
    answered: int,
    reports: int,
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
        "reports_stored": reports,
        "stored_but_not_answered": reports - answered,
        "outbox_entries": queued,
        "targets": targets,
        "meets_targets": all(targets.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--saturation-seconds", type=float, default=6.0)
    parser.add_argument("--serve", nargs=2, metavar=("APP", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    measure(backends, args.step_seconds, args.saturation_seconds)


if __name__ == "__main__":
    main()
