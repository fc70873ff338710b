"""Benchmark: the CPU time one report costs the inbox's worker, with nothing else running.

`benchmarks.intake` measures the worker while acks compete for the same two cores, so its
per-report times move with the load. This one measures the work alone: a fresh, migrated
database with `--reports` earlier reports (default 5,000, as `benchmarks.similar` fills
them) and a leadership channel, `/feedback <text>` requests stored in the inbox as the bot
stores them, and one worker (`Inbox.handle_one`, as `feedbot inbox-worker` runs it) filing
them one by one in this thread: the report, its terms and timeline, incident grouping, the
card or the group card's update, the receipt with its suggestions, all queued in the outbox.
A fake Slack Web API (`tests.fakeslack`) answers the few calls the work makes; nothing is
sent (no outbox sender runs), so an incident card's update, once queued, waits to the end and
the group's later members add none: the best case of a burst, where in a running bot a
sender takes each update within moments.

After `--warm-up` untimed entries (default 100), `--entries` (default 400) are filed and
timed with `time.thread_time` (the worker thread's CPU time, SQLite's own work included; on
PostgreSQL the server's work is not in it), and the wall time they took in all
(`wall_ms_mean`, per entry: waits for the disk and, on PostgreSQL, the server's work and the
round trips to it included). On SQLite, whose work runs in the worker's thread and so is in
its CPU time, `sqlite_ms_mean` is the part spent inside SQLite's calls and `python_ms_mean`
the rest. Then `--profiled` (default 100) more, untimed,
under cProfile: the JSON line's `profile` lists the functions of feedbot with the most time including callees,
per report. In this benchmark's texts most reports join an incident group.

`--open-homes N`: N leaders, and every reporter, opened their App Home within the last hours,
as in a running workspace, so every report changes Homes to publish (`open_homes` in the
JSON line). By default nobody has.

    {"benchmark": "filing", "backend": "sqlite", "reports": 5000, "entries": 400,
     "cpu_ms_p50": 14.5, "cpu_ms_mean": 15.6, "wall_ms_mean": 16.0,
     "sqlite_ms_mean": 4.1, "python_ms_mean": 11.5,
     "profile": ["12.5 ms: flows.py:64 file_report", ...]}

Usage: python -m benchmarks.filing [--backend sqlite|postgresql|both] [--reports 5000]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def measure(
    backend: str, *, reports: int, warm_up: int, entries: int, profiled: int, open_homes: int = 0
) -> None:
    from sqlmodel import Session

    from benchmarks.intake import (
        HOME_LEADERS,
        LEADERSHIP,
        TOKEN,
        USERS,
        _settings,
        command_form,
        configure,
    )
    from benchmarks.similar import fill
    from feedbot.core import inbox as core_inbox
    from feedbot.db import make_engine
    from feedbot.slack.app import build_app
    from feedbot.slack.client import make_interactive_client
    from feedbot.slack.deps import Deps
    from feedbot.slack.work import Work
    from tests.fakeslack import FakeSlack

    leaders = HOME_LEADERS[:open_homes]
    fake = FakeSlack(token=TOKEN).start()
    try:
        for index, user in enumerate([*USERS, *leaders]):
            fake.add_user(user, locale="de-DE" if index % 3 else "en-US")
        fake.add_channel(LEADERSHIP, name="leadership")
        with fresh_database(backend) as url:
            fill(backend, url, reports)
            configure(url)
            if open_homes:
                homes_opened(url, leaders, USERS)
            engine = make_engine(url)
            settings = _settings(url, fake.base_url)
            deps = Deps(settings=settings, engine=engine, client=make_interactive_client(settings))
            work = Work.assemble(deps, only_work=True)
            build_app(settings, engine, deps=deps, inbox=work.inbox)
            rng = random.Random(11)
            texts = report_texts(rng, 2000)

            def store(count: int, first: int) -> None:
                with engine.begin() as connection:
                    for index in range(first, first + count):
                        body = command_form(
                            index, rng.choice(USERS), rng.choice(texts)[0], fake.new_response_url()
                        )
                        core_inbox.store(
                            connection,
                            kind="command",
                            dedupe_key=f"filing:{index}",
                            body=deps.identities.seal(json.dumps(body)),
                            now=datetime.now(UTC),
                        )

            store(warm_up, 0)
            while work.inbox.handle_one():
                pass
            store(entries + profiled, warm_up)
            costs: list[float] = []
            engine_clock = SqliteClock()
            began = time.perf_counter()
            with engine_clock.running():
                for _ in range(entries):
                    started = time.thread_time()
                    if not work.inbox.handle_one():
                        raise RuntimeError("an entry was not handled")
                    costs.append(time.thread_time() - started)
            wall = time.perf_counter() - began
            profile = cProfile.Profile()
            for _ in range(profiled):
                profile.enable()
                handled = work.inbox.handle_one()
                profile.disable()
                if not handled:
                    raise RuntimeError("an entry was not handled")
            with Session(engine) as session:
                failed = len(core_inbox.failures(session))
            work.liveness.stop()
            engine.dispose()
    finally:
        fake.stop()
    if failed:
        raise RuntimeError(f"{failed} entries failed; see the log")
    emit(
        {
            "benchmark": "filing",
            "backend": backend,
            "reports": reports,
            "entries": entries,
            "cpu_ms_p50": rounded(percentile(costs, 50) * 1000),
            "cpu_ms_p90": rounded(percentile(costs, 90) * 1000),
            "cpu_ms_mean": rounded(sum(costs) / len(costs) * 1000),
            "wall_ms_mean": rounded(wall / entries * 1000),
            "open_homes": open_homes,
            **_split(costs, engine_clock.seconds, backend),
            "profile": _top(profile, profiled),
            "load_average": load_average(),
        }
    )


def homes_opened(url: str, leaders: list[str], reporters: list[str]) -> None:
    """`leaders` lead every channel, and they and `reporters` opened their Home this hour."""
    from feedbot.core.config import set_value
    from feedbot.db import make_engine, session_scope
    from feedbot.models import SlackUser

    engine = make_engine(url)
    opened = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with session_scope(engine) as session:
        set_value(session, key="leaders", raw=",".join(leaders), actor="benchmark")
        never = datetime(1970, 1, 1, tzinfo=UTC)  # their language is still to be asked
        for user in [*leaders, *reporters]:
            session.add(SlackUser(user_id=user, fetched_at=never, home_opened_at=opened))
    engine.dispose()


class SqliteClock:
    """The CPU time this thread spends inside SQLite's own calls (statements, fetches,
    commits and rollbacks of `feedbot.sqlite_writer`'s connections, with the few lines of
    its write turns around them), while `running`. SQLite works in the
    calling thread, so `time.thread_time` counts its work with Python's; this tells them
    apart. (PostgreSQL works in its own process: its work is not in the thread's time.)"""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def running(self) -> Iterator[None]:
        from feedbot.sqlite_writer import TurnTakingConnection, TurnTakingCursor

        methods = [
            (TurnTakingCursor, name)
            for name in ("execute", "executemany", "fetchone", "fetchmany", "fetchall")
        ] + [(TurnTakingConnection, "commit"), (TurnTakingConnection, "rollback")]
        originals = [(owner, name, owner.__dict__.get(name)) for owner, name in methods]
        for owner, name in methods:
            setattr(owner, name, self._timed(getattr(owner, name)))
        try:
            yield
        finally:
            for owner, name, original in originals:
                if original is None:
                    delattr(owner, name)  # it was the sqlite3 base class's method
                else:
                    setattr(owner, name, original)

    def _timed(self, method: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - started

        return timed


def _split(costs: list[float], in_sqlite: float, backend: str) -> dict[str, float | None]:
    """On SQLite, the mean CPU time per report inside SQLite and outside it (Python's)."""
    if backend != "sqlite":
        return {}
    inside = in_sqlite / len(costs)
    return {
        "sqlite_ms_mean": rounded(inside * 1000),
        "python_ms_mean": rounded((sum(costs) / len(costs) - inside) * 1000),
    }


def _top(profile: cProfile.Profile, entries: int, count: int = 20) -> list[str]:
    """feedbot's functions with the most time including callees, per report (wall time)."""
    stats: Any = pstats.Stats(profile)
    rows = [
        (cumulative, file, line, name)
        for (file, line, name), (_, _, _, cumulative, _) in stats.stats.items()
        if "/feedbot/" in file
    ]
    rows.sort(reverse=True)
    return [
        f"{cumulative / entries * 1000:.2f} ms: {Path(file).name}:{line} {name}"
        for cumulative, file, line, name in rows[:count]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument("--warm-up", type=int, default=100)
    parser.add_argument("--entries", type=int, default=400)
    parser.add_argument("--profiled", type=int, default=100)
    parser.add_argument("--open-homes", type=int, default=0, metavar="LEADERS")
    args = parser.parse_args()
    from benchmarks.intake import HOME_LEADERS

    if not 0 <= args.open_homes <= len(HOME_LEADERS):
        parser.error(f"--open-homes: from 0 to {len(HOME_LEADERS)} leaders")
    for backend in BACKENDS if args.backend == "both" else [args.backend]:
        log.info("filing/%s: %s reports, then %s entries", backend, args.reports, args.entries)
        measure(
            backend,
            reports=args.reports,
            warm_up=args.warm_up,
            entries=args.entries,
            profiled=args.profiled,
            open_homes=args.open_homes,
        )


if __name__ == "__main__":
    main()
