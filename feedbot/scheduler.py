"""The scheduled jobs, in one table, and the scheduler that runs them."""

from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from feedbot import jobs


def build_scheduler(engine: Engine, *, timezone: str) -> BackgroundScheduler:
    """A thread-based scheduler with every job registered under a fixed id."""
    scheduler = BackgroundScheduler(
        timezone=timezone,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    scheduler.add_job(
        jobs.prune,
        IntervalTrigger(hours=6),
        args=[engine],
        id="prune",
        replace_existing=True,
    )
    return scheduler
