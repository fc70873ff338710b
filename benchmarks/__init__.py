"""Benchmarks for feedbot at production scale; see docs/performance.md.

Each benchmark is a module run as `python -m benchmarks.<name>` from the repository root. It
prints one JSON object per measurement on stdout and nothing else there; progress goes to
stderr. `python -m benchmarks.run_all` (or `make bench`) runs them all. They are not part of
the test suite: they take minutes and their numbers depend on the machine.

This package root holds only what several benchmarks share and has no side effects: database
set-up (a fresh migrated SQLite file, or a throwaway PostgreSQL database), report texts in the
mixed German and English that frontline staff write, and small statistics helpers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")


def emit(record: dict[str, Any]) -> None:
    """Print one measurement as a JSON line on stdout (the only thing benchmarks print there)."""
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def setup_logging() -> logging.Logger:
    """Progress lines on stderr; feedbot's and the libraries' own logs only from warnings up."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    log = logging.getLogger("benchmarks")
    log.setLevel(logging.INFO)
    return log


def postgres_server() -> str:
    """The PostgreSQL server benchmarks create their throwaway databases on."""
    return os.environ.get("FEEDBOT_BENCH_DATABASE_URL") or DEFAULT_POSTGRES


@contextmanager
def throwaway_postgres(server: str | None = None) -> Iterator[str]:
    """A new, empty database on `server` (`feedbot_bench_<random>`), dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from feedbot.db import normalise_url

    base = make_url(normalise_url(server or postgres_server()))
    name = f"feedbot_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """The URL of an empty database of `backend`, migrated to head, removed afterwards."""
    from feedbot.db import make_engine, upgrade

    def migrate(url: str) -> None:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()

    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="feedbot-bench-") as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            migrate(url)
            yield url
        return
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r}")
    with throwaway_postgres() as url:
        migrate(url)
        yield url


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def rounded(value: float, digits: int = 2) -> float | None:
    """`value` rounded for JSON; None instead of NaN (which JSON cannot carry)."""
    return None if math.isnan(value) else round(value, digits)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: `VmHWM` from /proc/self/status.

    Not `getrusage().ru_maxrss`: Linux carries that across `execve`, so a measuring child
    would report the peak of the parent that started it (which may hold the generated data).
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return math.nan


def load_average() -> float:
    """The 1-minute load average when a measurement starts: other work on the machine shows."""
    return round(os.getloadavg()[0], 2)


# Phrases frontline staff add to a report, in both languages, and what varies between shops.
_ADDITIONS = (
    "Seit heute Morgen",
    "since this morning",
    "Kunden sind verärgert",
    "customers are annoyed",
    "bitte dringend prüfen",
    "please check urgently",
    "schon dreimal gemeldet",
    "reported three times already",
    "betrifft auch die Filiale nebenan",
    "the neighbouring shop has it too",
    "Hotline weiß nichts davon",
    "the hotline knows nothing about it",
    "Kundin hat auf Facebook geschrieben",
    "a customer posted about it on Facebook",
    "Techniker vor Ort bestätigt das",
    "the technician on site confirms it",
    "passiert nur bei Prepaid-Kunden",
    "only prepaid customers are affected",
    "Ticket bei der IT ist offen",
    "IT ticket is open but nobody answers",
)
_DEVICES = (
    "Fritzbox 7590",
    "Fritzbox 6660",
    "Speedport Smart 4",
    "iPhone 15",
    "Galaxy S24",
    "Pixel 8",
    "Router",
    "Kassensystem",
    "Vertriebsportal",
    "Terminkalender",
    "Kartenterminal",
    "eSIM-Profil",
    "MagentaTV-Box",
    "Hotspot",
    "Tablet",
)
_SYMPTOMS = (
    "startet ständig neu",
    "reboots every few minutes",
    "hängt beim Login",
    "freezes at login",
    "zeigt einen Fehlercode",
    "shows an error code",
    "lädt extrem langsam",
    "is extremely slow",
    "verliert die Verbindung",
    "keeps losing the connection",
    "wird doppelt berechnet",
    "is billed twice",
    "lässt sich nicht aktivieren",
    "cannot be activated",
    "druckt keine Belege",
    "prints no receipts",
)
_PLACES = (
    "in Leipzig",
    "in Dresden",
    "am Alexanderplatz",
    "in Hamburg",
    "in Köln",
    "in Munich",
    "im Außendienst Sachsen",
    "in the field team Brandenburg",
    "an der Hotline",
    "in the shop at the station",
)


def report_texts(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """`count` (text, category) pairs as staff write them: German, English, or both mixed.

    About half retell one of the demo's recurring problems (`feedbot.simulated_weeks.PROBLEMS`), so
    many reports share words the way waves of one problem do; the rest combine devices,
    symptoms, places and remarks freely, with an occasional ticket number or typo, so the
    vocabulary keeps growing with the table instead of repeating a few dozen sentences.
    """
    from feedbot import simulated_weeks as demo

    categories = sorted({problem.category for problem in demo.PROBLEMS})
    out: list[tuple[str, str]] = []
    for _ in range(count):
        if rng.random() < 0.5:
            problem = rng.choice(demo.PROBLEMS)
            parts = [rng.choice(problem.texts)]
            category = problem.category
        else:
            parts = [f"{rng.choice(_DEVICES)} {rng.choice(_SYMPTOMS)} {rng.choice(_PLACES)}."]
            category = rng.choice(categories)
        parts += rng.sample(_ADDITIONS, k=rng.randint(0, 2))
        if rng.random() < 0.3:
            parts.append(f"Ticket INC{rng.randint(100000, 999999)}, Shop {rng.randint(1, 400)}")
        text = " ".join(parts)
        if rng.random() < 0.1 and len(text) > 20:  # a typo: two letters swapped
            at = rng.randrange(1, len(text) - 2)
            text = text[:at] + text[at + 1] + text[at] + text[at + 2 :]
        out.append((text, category))
    return out
