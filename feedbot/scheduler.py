"""The scheduled jobs, in one table, and the scheduler that runs them.

Jobs live in memory (not in a job store): the table below is the whole schedule, rebuilt at
every start. Whether a period's work was done is recorded by the jobs in feedbot's own
tables, which is what makes a restart or a second replica harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from feedbot import jobs
from feedbot.metrics import instrumented

if TYPE_CHECKING:
    from feedbot.slack.deps import Deps

JOBS: list[tuple[str, Callable[[Deps], None], Callable[[str], Any]]] = [
    # (id, function, trigger for the default timezone)
    ("prune", jobs.prune, lambda tz: IntervalTrigger(hours=6, timezone=tz)),
    ("retention", jobs.purge_expired, lambda tz: IntervalTrigger(hours=1, timezone=tz)),
    ("digests", jobs.send_due_digests, lambda tz: IntervalTrigger(minutes=1, timezone=tz)),
    ("reminders", jobs.scan_reminders, lambda tz: IntervalTrigger(minutes=1, timezone=tz)),
]


def build_scheduler(deps: Deps) -> BackgroundScheduler:
    """A thread-based scheduler with every job registered under a fixed id."""
    timezone = deps.settings.feedbot_timezone
    scheduler = BackgroundScheduler(
        timezone=timezone,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    for job_id, function, trigger in JOBS:
        scheduler.add_job(
            instrumented(job_id, function),
            trigger(timezone),
            args=[deps],
            id=job_id,
            replace_existing=True,
            # Run once as soon as this process leads: a digest or reminder missed while no
            # process was leading goes out now (each job knows what it already did).
            next_run_time=datetime.now(UTC),
        )
    return scheduler
