"""Prometheus metrics, served at `/metrics`.

Counters and histograms are updated where things happen; the outbox backlog is read from the
database when Prometheus scrapes, so every replica reports the same shared queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from feedbot.db import session_scope

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()

REPORTS_CREATED = Counter(
    "feedbot_reports_created_total", "Reports filed, by way in", ["source"], registry=REGISTRY
)
SLACK_REQUESTS = Counter(
    "feedbot_slack_requests_total",
    "Requests from Slack, by kind and HTTP status class",
    ["kind", "outcome"],
    registry=REGISTRY,
)
SLACK_REQUEST_SECONDS = Histogram(
    "feedbot_slack_request_seconds",
    "Time to answer Slack (the ack), by kind",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0),
    registry=REGISTRY,
)
OUTBOX_DELIVERIES = Counter(
    "feedbot_outbox_deliveries_total",
    "Outbox delivery attempts, by outcome (sent, retry, failed)",
    ["outcome"],
    registry=REGISTRY,
)
FORWARDERS: list[Callable[[str, str], None]] = []
"""Also told of each count (its kind and label): the inbox workers' process passes its
counts on to `feedbot run`, whose `/metrics` Prometheus reads (`feedbot.worker_process`)."""
REPORT, DELIVERY = "report", "delivery"
_COUNTERS = {REPORT: REPORTS_CREATED, DELIVERY: OUTBOX_DELIVERIES}


def count_report(source: str) -> None:
    _count(REPORT, source)


SENT, RETRY, FAILED = "sent", "retry", "failed"
"""How an outbox delivery attempt ended: sent, put back in line, or given up."""


def count_delivery(outcome: str) -> None:
    """One delivery attempt of the outbox (`SENT`, `RETRY` or `FAILED`)."""
    _count(DELIVERY, outcome)


def _count(kind: str, label: str) -> None:
    _COUNTERS[kind].labels(label).inc()
    for forward in FORWARDERS:
        forward(kind, label)


def counted_elsewhere(kind: str, label: str) -> None:
    """A count the inbox workers' process passed on; unknown kinds are ignored."""
    counter = _COUNTERS.get(kind)
    if counter is not None and label:
        counter.labels(label).inc()


JOB_RUNNER = Gauge(
    "feedbot_job_runner", "1 while this process runs the scheduled jobs", registry=REGISTRY
)
JOB_RUNS = Counter(
    "feedbot_job_runs_total",
    "Scheduled job runs, by job and outcome",
    ["job", "outcome"],
    registry=REGISTRY,
)
JOB_SECONDS = Histogram("feedbot_job_seconds", "Scheduled job duration", ["job"], registry=REGISTRY)


class OutboxBacklog(Collector):
    """`feedbot_outbox_backlog{status}`: entries by status, read at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from feedbot.core.outbox import backlog

        family = GaugeMetricFamily(
            "feedbot_outbox_backlog", "Outbox entries by status", labels=["status"]
        )
        try:
            with session_scope(self.engine) as session:
                for status, count in backlog(session).items():
                    family.add_metric([status], count)
        except Exception as exc:
            log.warning("outbox backlog unavailable for /metrics: %s", type(exc).__name__)
        yield family


def watch_outbox(engine: Engine) -> None:
    REGISTRY.register(OutboxBacklog(engine))


class InboxDepth(Collector):
    """`feedbot_inbox_depth` and `feedbot_inbox_oldest_seconds`: requests acked but not yet
    handled, and how long the oldest has waited (the backlog of every replica together)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from feedbot.core.inbox import depth
        from feedbot.models import utcnow

        waiting = GaugeMetricFamily("feedbot_inbox_depth", "Requests acked but not yet handled")
        oldest = GaugeMetricFamily(
            "feedbot_inbox_oldest_seconds", "Seconds the oldest unhandled request has waited"
        )
        failed = GaugeMetricFamily(
            "feedbot_inbox_failed", "Requests set aside after failing (see `feedbot inbox`)"
        )
        try:
            with session_scope(self.engine) as session:
                found = depth(session, now=(self.clock or utcnow)())
            waiting.add_metric([], found.pending)
            oldest.add_metric([], found.oldest_seconds)
            failed.add_metric([], found.failed)
        except Exception as exc:
            log.warning("inbox depth unavailable for /metrics: %s", type(exc).__name__)
        yield waiting
        yield oldest
        yield failed


def watch_inbox(engine: Engine) -> None:
    REGISTRY.register(InboxDepth(engine))


def exposition() -> bytes:
    return generate_latest(REGISTRY)


@contextmanager
def timed_job(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except Exception:
        JOB_RUNS.labels(name, "error").inc()
        raise
    else:
        JOB_RUNS.labels(name, "ok").inc()
    finally:
        JOB_SECONDS.labels(name).observe(time.perf_counter() - started)


def instrumented(name: str, job: Callable[..., None]) -> Callable[..., None]:
    """The job, counted and timed, with a job id on every log line it writes."""
    from feedbot.logs import log_context

    def run(*args: Any) -> None:
        with log_context(job=name), timed_job(name):
            job(*args)

    run.__name__ = run.__qualname__ = name
    return run
