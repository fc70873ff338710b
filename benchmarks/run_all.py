"""Run every benchmark, one after another, as `make bench` does.

Each benchmark runs as its own process (`python -m benchmarks.<name>`), so one's memory and
threads cannot skew the next. Their JSON lines pass through to stdout, each tagged with the
benchmark's name if it did not say it itself; first comes one line describing the machine,
since every number depends on it. Benchmarks that are not there yet (digest and reminders
are written separately) are skipped with a note on stderr; one that fails is reported as a
JSON line with an `error`, the others still run, and the exit status is 1.

PostgreSQL: every benchmark uses `FEEDBOT_BENCH_DATABASE_URL` (default: the local server,
postgresql://postgres@127.0.0.1:5432/postgres), creating and dropping its own database there.

Usage: python -m benchmarks.run_all [NAME ...]     (default: all of them)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import emit, load_average, postgres_server, setup_logging

log = setup_logging()

BENCHMARKS = ("intake", "filing", "outbox", "similar", "digest", "reminders")
HERE = Path(__file__).resolve().parent
TIME_LIMIT = 30 * 60
"""Seconds one benchmark may take before it is stopped and reported as failed."""


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as info:
        memory_kb = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
    return {
        "benchmark": "machine",
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "postgresql": _postgres_version(),
        "load_average": load_average(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _postgres_version() -> str | None:
    from sqlalchemy import create_engine, text

    from feedbot.db import normalise_url

    try:
        engine = create_engine(normalise_url(postgres_server()))
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar_one()
        engine.dispose()
        return str(version)
    except Exception as exc:
        log.warning("PostgreSQL unreachable: %s", exc)
        return None


def run(name: str) -> bool:
    """Run one benchmark, passing its JSON lines through; True if it succeeded."""
    server = postgres_server()
    # benchmarks/reminders.py reads the server from FEEDBOT_BENCH_POSTGRES_URL.
    env = dict(os.environ, FEEDBOT_BENCH_DATABASE_URL=server)
    env.setdefault("FEEDBOT_BENCH_POSTGRES_URL", server)
    log.info("running benchmarks.%s", name)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{name}"],
        cwd=HERE.parent,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    watchdog = threading.Timer(TIME_LIMIT, process.kill)
    watchdog.start()
    for line in process.stdout:
        try:
            record = json.loads(line)
        except ValueError:
            sys.stderr.write(line)  # stdout stays JSON only
            continue
        if isinstance(record, dict):
            record.setdefault("benchmark", name)
            emit(record)
    status = process.wait()
    watchdog.cancel()
    seconds = round(time.monotonic() - started, 1)
    log.info("benchmarks.%s finished in %s s with status %s", name, seconds, status)
    if status != 0:
        emit({"benchmark": name, "error": f"exit status {status}", "seconds": seconds})
    return status == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)}")
    emit(machine())
    ok = True
    for name in args.names or BENCHMARKS:
        if not (HERE / f"{name}.py").exists():
            log.info("benchmarks.%s is not there; skipped", name)
            continue
        ok = run(name) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
