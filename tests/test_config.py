"""Runtime configuration through the real `feedbot config` command, and a change reaching a
running bot within seconds, without a restart.

Commands run as separate processes (`python -m feedbot`) against the test's database, the way
an admin runs them next to a live bot. Independent commands run side by side to keep the
suite fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from feedbot.cli import main
from feedbot.core import config as runtime_config
from feedbot.core.config import KEYS, format_value, load_config, parse_value
from feedbot.errors import InvalidValue
from feedbot.models import ConfigEntry
from feedbot.settings import get_settings
from feedbot.slack.app import build_app
from feedbot.slack.deps import CONFIG_TTL
from tests.harness import ALICE, INTAKE, LEADERSHIP, TOKEN, Bot

EXIT_USAGE = 2


def feedbot(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m feedbot …` with a clean environment: only PATH and the database."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(cwd),
        "PYTHONUTF8": "1",
        "DATABASE_URL": database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "feedbot", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def side_by_side(
    commands: list[tuple[str, ...]], *, database_url: str, cwd: Path
) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(feedbot, *command, database_url=database_url, cwd=cwd)
            for command in commands
        ]
        return [future.result() for future in futures]


def stored(engine: Engine) -> runtime_config.RuntimeConfig:
    with Session(engine) as session:
        return load_config(session)


def show(output: str) -> dict[str, str]:
    """`config show` lines, `key  value  # help`, as {key: value} ('-' means unset)."""
    values = {}
    for line in output.splitlines():
        key, _, rest = line.partition(" ")
        values[key] = rest.rsplit("  # ", 1)[0].strip()
    return values


# (raw value an admin types, what `config get`/`show` prints back, the stored typed value)
VALID = {
    "leadership_channel": ("CLEAD0001", "CLEAD0001", "CLEAD0001"),
    "intake_channels": (
        " CINTAKE01, GPRIVATE1,CINTAKE01 ",
        "CINTAKE01,GPRIVATE1",
        ["CINTAKE01", "GPRIVATE1"],
    ),
    "leaders": ("ULEADER01,WLEADER02", "ULEADER01,WLEADER02", ["ULEADER01", "WLEADER02"]),
    "admins": ("UADMIN001", "UADMIN001", ["UADMIN001"]),
    "timezone": ("America/New_York", "America/New_York", "America/New_York"),
    "allow_anonymous": ("no", "false", False),
    "categories": (
        "Network, Billing & tariffs",
        "Network,Billing & tariffs",
        ["Network", "Billing & tariffs"],
    ),
    "locations": (
        "Leipzig Hbf,Berlin Mitte",
        "Leipzig Hbf,Berlin Mitte",
        ["Leipzig Hbf", "Berlin Mitte"],
    ),
    "language": ("DE", "de", "de"),
    "holiday_region": ("de-nw", "DE-NW", "DE-NW"),
}

# (command, what the message must say); every one exits 2 and changes nothing.
REFUSED = [
    (("config", "set", "leaders", "bob"), "not user IDs: bob (expected IDs like U0123ABCD"),
    (("config", "set", "admins", "UADMIN001,@alice"), "not user IDs: @alice"),
    (
        ("config", "set", "leadership_channel", "#leadership"),
        "#leadership is not a Slack channel ID (expected an ID like C0123ABCD",
    ),
    (("config", "set", "intake_channels", "CINTAKE01,general"), "not channel IDs: general"),
    (
        ("config", "set", "colour", "blue"),
        "unknown setting 'colour'; known settings: leadership_channel",
    ),
    (("config", "get", "colour"), "unknown setting 'colour'"),
    (("config", "set", "allow_anonymous", "maybe"), "'maybe' is not true or false"),
    (("config", "set", "timezone", "Mars/Olympus"), "is not an IANA timezone (like Europe/Berlin)"),
    (("config", "set", "categories", " , "), "at least one category"),
    (("config", "set", "language", "fr"), "(en or de)"),
    (("config", "set", "holiday_region", "XX"), "not a country code with known holidays"),
    (("config", "set", "holiday_region", "DE-ZZ"), "DE has no region 'ZZ'; known: "),
]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Callable[..., Outcome]]:
    """`feedbot …` run in this process through `feedbot.cli.main`, the console script's entry
    point: the same parsing, handlers, messages and exit codes, without a Python start-up per
    call. `test_the_real_command_end_to_end` covers the process boundary."""
    monkeypatch.chdir(tmp_path)  # no stray .env

    def run(*args: str, database_url: str) -> Outcome:
        monkeypatch.setenv("DATABASE_URL", database_url)
        get_settings.cache_clear()
        code = main(list(args))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    yield run
    get_settings.cache_clear()


def test_commands_leave_no_database_connection_open(
    cli: Callable[..., Outcome], database_url: str, engine: Engine
) -> None:
    """A one-shot command closes its connections as it ends: run one after another in one
    process, pooled ones stayed open until collected, and PostgreSQL refused more clients
    (a command then failed with exit 69)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to count connections on")

    def others() -> int:
        with engine.connect() as connection:
            return int(
                connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).scalar_one()
            )

    before = others()
    for command in (
        ("config", "get", "language"),
        ("config", "show"),
        ("audit",),
        ("db", "upgrade"),
    ):
        result = cli(*command, database_url=database_url)
        assert result.returncode == 0, (command, result.stderr)
    # A backend may still be listed for a moment after its client has gone.
    deadline = time.monotonic() + 2.0
    while others() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert others() == before


def test_set_accepts_a_valid_value_for_every_key(
    cli: Callable[..., Outcome], database_url: str, engine: Engine
) -> None:
    for key, (raw, shown, _) in VALID.items():
        result = cli("config", "set", key, raw, database_url=database_url)
        assert result.returncode == 0, (key, result.stderr)
        assert result.stdout.strip() == f"{key} = {shown}"
        got = cli("config", "get", key, database_url=database_url)
        assert (got.returncode, got.stdout.strip()) == (0, shown), key

    listing = cli("config", "show", database_url=database_url)
    assert listing.returncode == 0, listing.stderr
    values = show(listing.stdout)
    assert set(values) == set(KEYS)
    for key, (_, shown, _) in VALID.items():
        assert values[key] == shown, key

    current = stored(engine)
    for key, (_, _, typed) in VALID.items():
        assert getattr(current, key) == typed, key


def test_refused_values_exit_2_saying_what_is_expected(
    cli: Callable[..., Outcome], database_url: str, engine: Engine
) -> None:
    for command, expected in REFUSED:
        result = cli(*command, database_url=database_url)
        assert result.returncode == EXIT_USAGE, (command, result.stderr)
        assert result.stdout == "", command
        assert result.stderr.startswith("feedbot: "), (command, result.stderr)
        assert expected in result.stderr, (command, result.stderr)
    with Session(engine) as session:
        assert session.exec(select(ConfigEntry)).all() == [], "a refused value was stored"


def test_the_real_command_end_to_end(database_url: str, engine: Engine, tmp_path: Path) -> None:
    """Separate processes, as an admin runs them next to a live bot."""
    accepted, refused = side_by_side(
        [
            ("config", "set", "leaders", "ULEADER01,ULEADER02"),
            ("config", "set", "timezone", "Mars/Olympus"),
        ],
        database_url=database_url,
        cwd=tmp_path,
    )
    assert (accepted.returncode, accepted.stdout) == (
        0,
        "leaders = ULEADER01,ULEADER02\n",
    ), accepted.stderr
    assert refused.returncode == EXIT_USAGE, refused.stderr
    assert refused.stderr.startswith("feedbot: timezone: 'Mars/Olympus' is not an IANA timezone")
    assert "Traceback" not in refused.stderr
    got = feedbot("config", "get", "leaders", database_url=database_url, cwd=tmp_path)
    assert (got.returncode, got.stdout) == (0, "ULEADER01,ULEADER02\n"), got.stderr
    assert stored(engine).timezone is None


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    closed = "postgresql://feedbot:s3cret-pw@127.0.0.1:1/feedbot"
    result = feedbot("config", "show", database_url=closed, cwd=tmp_path)
    assert result.returncode not in (0, EXIT_USAGE)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("feedbot: cannot use the database"), result.stderr
    assert "127.0.0.1:1/feedbot" in result.stderr and "DATABASE_URL" in result.stderr
    assert "s3cret-pw" not in result.stderr


# -- values `config show` prints are values `config set` takes back -----------------------------


@pytest.mark.parametrize("key", list(KEYS))
def test_every_default_survives_show_then_set(key: str) -> None:
    default = KEYS[key].default
    assert parse_value(key, format_value(default)) == default


def test_clearing_a_channel_or_the_timezone_goes_back_to_the_default() -> None:
    assert parse_value("leadership_channel", "") is None
    assert parse_value("timezone", " ") is None
    with pytest.raises(InvalidValue):
        parse_value("categories", "")


# -- a change reaches the running bot ----------------------------------------------------------


def test_config_ttl_is_seconds() -> None:
    assert 0 < CONFIG_TTL <= 5


def test_a_change_reaches_a_running_bot_within_config_ttl(
    bot: Bot, database_url: str, tmp_path: Path
) -> None:
    """A message in a channel that becomes an intake channel is ignored before `config set`
    and filed within CONFIG_TTL seconds after it, by the same app (default TTL)."""
    bot.app = build_app(
        bot.settings,
        bot.engine,
        client=WebClient(token=TOKEN, base_url=bot.slack.base_url),
        clock=bot.clock,
    )
    bot.configure(leadership_channel=LEADERSHIP)
    response, _ = bot.message(ALICE, "The till in Leipzig is frozen")
    assert response.status == 200
    assert bot.reports() == []  # not an intake channel yet, and that is now cached

    result = feedbot(
        "config", "set", "intake_channels", INTAKE, database_url=database_url, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    changed = time.monotonic()
    attempt = 0
    while not bot.reports():
        assert time.monotonic() - changed < CONFIG_TTL + 1.0, "the change never arrived"
        attempt += 1
        response, _ = bot.message(ALICE, f"The till in Leipzig is frozen ({attempt})")
        assert response.status == 200
        if not bot.reports():
            time.sleep(0.05)
    assert time.monotonic() - changed <= CONFIG_TTL + 0.25
    [report] = bot.reports()
    assert report.text.endswith(f"({attempt})")
