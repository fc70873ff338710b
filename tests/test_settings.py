"""Process settings: `.env.example` documents exactly the settings, a bot that cannot work
refuses to start with one message saying what to set and where to find it, and secrets never
reach the log.

The start-up checks run the real command (`python -m feedbot`) in a clean environment and an
empty working directory, the way an operator meets them for the first time.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from feedbot.cli import main
from feedbot.logs import configure_logging, without_database_details
from feedbot.models import InboxEntry, Report
from feedbot.settings import SECRET_SOURCES, Settings, get_settings, is_placeholder
from tests.fakeslack import FakeSlack
from tests.harness import TOKEN

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"
SECRETS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "FEEDBOT_SECRET_KEY")

# Secrets shaped like real ones (made up). Each random tail contains a stand-in word, which
# must not make it look like a placeholder.
BOT_TOKEN = "xoxb-1234567890123-1234567890123-aBxxxQyourRexampleTt0Zz9K"
APP_TOKEN = "xapp-1-A0123ABCDEF-1234567890123-0123456789abcdef0123456789abcdefxxx"
SIGNING_SECRET = "8f742231b10e8888abcd991234567a5b"
SHORT_SIGNING_SECRET = SIGNING_SECRET[:-1]  # one character short of Slack's 32
SECRET_KEY = "Zm9vYmFyYmF6cXV1eHF1dXpjb3JnZ3JhdWx0Z2FycGx5"


def read_env_example() -> dict[str, str]:
    """KEY=VALUE lines of `.env.example`; each must follow a comment that documents it."""
    values: dict[str, str] = {}
    documented = False
    for number, raw in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            documented = False
            continue
        if line.startswith("#"):
            documented = True
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env.example:{number} is not KEY=VALUE: {raw!r}"
        assert key == key.strip().upper(), f".env.example:{number}: {key!r} is not upper case"
        assert key not in values, f".env.example:{number}: {key} is set twice"
        assert documented, f".env.example:{number}: {key} has no comment saying what it is"
        values[key] = value
        documented = False
    return values


def feedbot(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real command with nothing from this process's environment but PATH."""
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "PYTHONUTF8": "1"}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "feedbot", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def assert_one_message(result: subprocess.CompletedProcess[str]) -> str:
    """Non-zero exit, nothing on stdout, and on stderr one `feedbot:` message, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("feedbot: "), result.stderr
    assert sum(line.startswith("feedbot:") for line in lines) == 1, result.stderr
    return result.stderr


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


# -- .env.example and Settings agree -------------------------------------------------------


def test_env_example_lists_exactly_the_settings() -> None:
    documented = set(read_env_example())
    fields = {name.upper() for name in Settings.model_fields}
    assert documented - fields == set(), "in .env.example but not a Settings field"
    assert fields - documented == set(), "Settings fields missing from .env.example"


def test_env_example_values_are_valid_and_its_secrets_are_placeholders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    example = read_env_example()
    settings = Settings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    assert settings.database_url == example["DATABASE_URL"]
    assert settings.port == int(example["PORT"])
    assert settings.host == example["HOST"] == "0.0.0.0"
    assert settings.feedbot_timezone == example["FEEDBOT_TIMEZONE"]
    # A copied, unedited .env must not pass for a configured bot in either mode.
    assert settings.missing_secrets(socket_mode=False) == [
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "FEEDBOT_SECRET_KEY",
    ]
    assert settings.missing_secrets(socket_mode=True) == [
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "FEEDBOT_SECRET_KEY",
    ]
    assert not settings.socket_mode_available


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "xoxb-your-bot-token",
        "your-signing-secret",
        "xoxb-...",
        "xoxb-…",
        "xapp-xxxx",
        "changeme",
        "REPLACE_ME",
        "<bot token>",
        "example",
    ],
)
def test_placeholders_are_recognised(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", [BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, "xoxe.xoxb-1-MTIzNDU2"])
def test_real_looking_secrets_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)


# -- feedbot run refuses to start without its secrets ----------------------------------------

# Each start-up that must be refused: (arguments, environment, copy .env.example to .env?),
# each in an empty working directory. `refusals(case)` gives what it printed.
INVALID_SETTINGS = {
    "FEEDBOT_ADMINS": ("U012AB3CD,bob", "not Slack user IDs (like U012AB3CD): bob"),
    "FEEDBOT_TIMEZONE": (
        "Mars/Olympus",
        "unknown IANA timezone 'Mars/Olympus' (try Europe/Berlin)",
    ),
    "LOG_LEVEL": ("LOUD", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    "PORT": ("99999", "less than or equal to 65535"),
    "HOST": ("  ", "empty; use 0.0.0.0 for every interface or 127.0.0.1"),
}
REFUSED_STARTS: dict[str, tuple[tuple[str, ...], dict[str, str], bool]] = {
    "http-nothing": (("run",), {}, False),
    "socket-no-app-token": (
        ("run", "--socket"),
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "FEEDBOT_SECRET_KEY": SECRET_KEY,
        },
        False,
    ),
    "socket-by-default": (
        ("run",),
        {"SLACK_APP_TOKEN": APP_TOKEN, "FEEDBOT_SECRET_KEY": SECRET_KEY},
        False,
    ),
    "unedited-env-example": (("run",), {}, True),
    "http-short-signing-secret": (
        ("run", "--http"),
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SHORT_SIGNING_SECRET,
            "FEEDBOT_SECRET_KEY": SECRET_KEY,
        },
        False,
    ),
    "socket-short-signing-secret": (
        ("run", "--socket"),
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SHORT_SIGNING_SECRET,
            "FEEDBOT_SECRET_KEY": SECRET_KEY,
        },
        False,
    ),
    "short-secret-key": (
        ("run", "--http"),
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "FEEDBOT_SECRET_KEY": SECRET_KEY[:31],
        },
        False,
    ),
    "tokens-swapped": (
        ("run", "--socket"),
        {
            "SLACK_BOT_TOKEN": APP_TOKEN,
            "SLACK_APP_TOKEN": BOT_TOKEN,
            "FEEDBOT_SECRET_KEY": SECRET_KEY,
        },
        False,
    ),
    "invalid-settings": (
        ("run",),
        {variable: value for variable, (value, _) in INVALID_SETTINGS.items()},
        False,
    ),
}

IN_SEPARATE_PROCESSES = ("http-nothing", "socket-no-app-token")
"""Both modes through the real `python -m feedbot`; the rest call `feedbot.cli.main` (what
the console script runs) in this process, which is much faster and answers the same."""


@dataclass(frozen=True)
class Refusal:
    stderr: str
    left_behind: list[str]  # what the attempt left in its empty working directory


@pytest.fixture(scope="module")
def separate_processes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Refusal]:
    def attempt(case: str) -> Refusal:
        args, env, with_env_file = REFUSED_STARTS[case]
        workdir = tmp_path_factory.mktemp(case)
        if with_env_file:
            shutil.copy(ENV_EXAMPLE, workdir / ".env")
        stderr = assert_one_message(feedbot(*args, cwd=workdir, env=env))
        return Refusal(stderr, sorted(p.name for p in workdir.iterdir()))

    with ThreadPoolExecutor(max_workers=len(IN_SEPARATE_PROCESSES)) as pool:
        futures = {case: pool.submit(attempt, case) for case in IN_SEPARATE_PROCESSES}
        return {case: future.result() for case, future in futures.items()}


@pytest.fixture
def refusals(
    separate_processes: dict[str, Refusal],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[[str], Refusal]:
    def refusal(case: str) -> Refusal:
        if case in separate_processes:
            return separate_processes[case]
        args, env, with_env_file = REFUSED_STARTS[case]
        workdir = tmp_path / case
        workdir.mkdir()
        if with_env_file:
            shutil.copy(ENV_EXAMPLE, workdir / ".env")
        monkeypatch.chdir(workdir)
        for name in Settings.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            code = main(list(args))
        finally:
            get_settings.cache_clear()
        captured = capsys.readouterr()
        assert_one_message(subprocess.CompletedProcess(args, code, captured.out, captured.err))
        return Refusal(captured.err, sorted(p.name for p in workdir.iterdir()))

    return refusal


@pytest.mark.parametrize(
    ("case", "missing"),
    [
        ("http-nothing", {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "FEEDBOT_SECRET_KEY"}),
        ("socket-no-app-token", {"SLACK_APP_TOKEN"}),
        ("socket-by-default", {"SLACK_BOT_TOKEN"}),  # an app token means Socket Mode
    ],
)
def test_run_without_secrets_names_each_missing_one(
    refusals: Callable[[str], Refusal], case: str, missing: set[str]
) -> None:
    refusal = refusals(case)
    for name in missing:
        line = next((ln for ln in refusal.stderr.splitlines() if ln.strip().startswith(name)), None)
        assert line is not None, f"{name} not named:\n{refusal.stderr}"
        assert f"{name} (not set)" in line
        assert SECRET_SOURCES[name] in line, f"no hint where to get {name}"
    for name in set(SECRETS) - missing:
        assert name not in refusal.stderr, f"{name} is set or not needed, yet named"
    assert ".env.example" in refusal.stderr
    given = REFUSED_STARTS[case][1]
    assert not any(secret in refusal.stderr for secret in given.values())
    assert refusal.left_behind == [], "it touched the database before refusing"


def test_run_with_the_unedited_env_example_names_the_placeholders(
    refusals: Callable[[str], Refusal],
) -> None:
    refusal = refusals("unedited-env-example")
    assert "SLACK_BOT_TOKEN (still a placeholder)" in refusal.stderr
    assert "SLACK_SIGNING_SECRET (still a placeholder)" in refusal.stderr
    assert "SLACK_APP_TOKEN" not in refusal.stderr  # empty in the example: HTTP mode
    assert "FEEDBOT_SECRET_KEY (not set)" in refusal.stderr  # make run writes one
    assert refusal.left_behind == [".env"]


def test_a_secret_key_too_short_to_seal_with_is_refused(
    refusals: Callable[[str], Refusal],
) -> None:
    refusal = refusals("short-secret-key")
    assert "FEEDBOT_SECRET_KEY (shorter than 32 characters)" in refusal.stderr
    assert SECRET_KEY[:31] not in refusal.stderr
    assert refusal.left_behind == []


def test_http_mode_refuses_a_signing_secret_shorter_than_slacks(
    refusals: Callable[[str], Refusal],
) -> None:
    """A short secret is a typo or a stand-in a stranger could guess and sign requests with."""
    refusal = refusals("http-short-signing-secret")
    line = next(ln for ln in refusal.stderr.splitlines() if "SLACK_SIGNING_SECRET" in ln)
    assert "SLACK_SIGNING_SECRET (shorter than Slack's 32 characters)" in line
    assert SECRET_SOURCES["SLACK_SIGNING_SECRET"] in line
    assert "SLACK_BOT_TOKEN" not in refusal.stderr
    assert SHORT_SIGNING_SECRET not in refusal.stderr
    assert refusal.left_behind == []


def test_socket_mode_does_not_need_the_signing_secret(refusals: Callable[[str], Refusal]) -> None:
    refusal = refusals("socket-short-signing-secret")
    assert "SLACK_APP_TOKEN (not set)" in refusal.stderr
    assert "SLACK_SIGNING_SECRET" not in refusal.stderr


def test_run_with_the_tokens_swapped_says_which_kind_is_expected(
    refusals: Callable[[str], Refusal],
) -> None:
    stderr = refusals("tokens-swapped").stderr
    assert "SLACK_BOT_TOKEN (not a xoxb-… token)" in stderr
    assert "SLACK_APP_TOKEN (not a xapp-… token)" in stderr
    assert APP_TOKEN not in stderr and BOT_TOKEN not in stderr


def test_invalid_settings_are_named_together_with_what_they_expect(
    refusals: Callable[[str], Refusal],
) -> None:
    refusal = refusals("invalid-settings")
    for variable, (_, expected) in INVALID_SETTINGS.items():
        line = next((line for line in refusal.stderr.splitlines() if variable in line), "")
        assert expected in line, f"{variable}: {expected!r} not in\n{refusal.stderr}"
    assert "Value error," not in refusal.stderr  # pydantic's prefix is noise to an operator
    assert refusal.left_behind == []


def test_run_with_a_token_slack_refuses_stops_with_one_message(
    workdir: Path, fake_slack: FakeSlack
) -> None:
    """The bot token is checked with auth.test at start, not at the first report."""
    revoked = "xoxb-1234567890123-1234567890123-RevokedTokenAbcdefGhij"
    result = feedbot(
        "run",
        "--http",
        cwd=workdir,
        env={
            "SLACK_API_URL": fake_slack.base_url,
            "SLACK_BOT_TOKEN": revoked,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "FEEDBOT_SECRET_KEY": SECRET_KEY,
        },
    )
    stderr = assert_one_message(result)
    assert "SLACK_BOT_TOKEN" in stderr and "invalid_auth" in stderr
    assert SECRET_SOURCES["SLACK_BOT_TOKEN"] in stderr
    assert revoked not in stderr and SIGNING_SECRET not in stderr
    assert [call.method for call in fake_slack.calls] == ["auth.test"]
    assert list(workdir.iterdir()) == []


def test_socket_mode_with_an_app_token_slack_refuses_stops_without_leaking_secrets(
    workdir: Path, fake_slack: FakeSlack
) -> None:
    """Runs the whole start-up (migrations, scheduler, sender) at DEBUG, then fails to
    connect: one message naming SLACK_APP_TOKEN, and no secret anywhere in the log."""
    result = feedbot(
        "run",
        "--socket",
        cwd=workdir,
        env={
            "SLACK_API_URL": fake_slack.base_url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "FEEDBOT_SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": f"sqlite:///{workdir / 'feedbot.db'}",
            "LOG_LEVEL": "DEBUG",
        },
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    message = [line for line in result.stderr.splitlines() if line.startswith("feedbot:")]
    assert len(message) == 1 and "SLACK_APP_TOKEN" in message[0], result.stderr
    assert " DEBUG " in result.stderr  # the log was on, so the absence below means something
    for secret in (TOKEN, SIGNING_SECRET, APP_TOKEN, SECRET_KEY):
        assert secret not in result.stderr + result.stdout
    assert "apps.connections.open" in [call.method for call in fake_slack.calls]


# -- settings parsing ------------------------------------------------------------------------


def test_admins_are_parsed_from_a_comma_separated_list() -> None:
    settings = Settings(feedbot_admins=" U012AB3CD, W0123ABCD ,", _env_file=None)  # type: ignore[call-arg]
    assert settings.feedbot_admins == ["U012AB3CD", "W0123ABCD"]
    with pytest.raises(ValidationError, match="bob"):
        Settings(feedbot_admins="U012AB3CD,bob", _env_file=None)  # type: ignore[call-arg]


# -- secrets never reach the log ----------------------------------------------------------------


@pytest.mark.parametrize("json_format", [False, True], ids=["text", "json"])
def test_secrets_are_redacted_from_messages_arguments_and_tracebacks(
    capsys: pytest.CaptureFixture[str], json_format: bool
) -> None:
    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_app_token=APP_TOKEN,
        _env_file=None,  # type: ignore[call-arg]
    )
    configure_logging("DEBUG", secrets=settings.secret_values(), json_format=json_format)
    log = logging.getLogger("redaction-test")  # its own: other tests may quieten "feedbot"
    log.setLevel(logging.NOTSET)
    log.info("bot token %s", BOT_TOKEN)
    log.warning(f"app token {APP_TOKEN} in the message itself")
    log.error("signing secret %s has no recognisable shape", SIGNING_SECRET)
    log.info("rotating %s, refreshing %s", "xoxe.xoxb-1-MTIzNDU2Nzg5MA", "xoxe-1-MTIzNDU2Nzg5MA")
    log.info("a user token %s", "xoxp-1234-5678-abcdef")
    log.info("100%% sure: %s", BOT_TOKEN)
    log.info("%d%% done", 50)
    try:
        raise RuntimeError(f"Slack said no to {BOT_TOKEN}")
    except RuntimeError:
        log.exception("calling Slack failed")
    output = capsys.readouterr().err

    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, "MTIzNDU2Nzg5MA", "5678-abcdef"):
        assert secret not in output
    assert "bot token xoxb-***" in output
    assert "app token xapp-***" in output
    assert "signing secret *** has" in output
    assert "100% sure: xoxb-***" in output
    assert "50% done" in output  # messages without secrets are left alone
    assert "Traceback" in output and "RuntimeError: Slack said no to xoxb-***" in output


def test_a_database_error_in_the_log_shows_no_report_contents(
    capsys: pytest.CaptureFixture[str], engine: Engine
) -> None:
    """A failed statement is logged with its SQL, never with the values it wrote: neither
    SQLAlchemy's parameters nor what PostgreSQL quotes in its DETAIL (the failing row with a
    report's text and a customer's contact, a duplicate key's value), however the text is
    written. The same holds for the error an inbox entry keeps."""
    configure_logging("INFO")
    log = logging.getLogger("redaction-test")
    log.setLevel(logging.NOTSET)
    # Written to end the DETAIL early for anything that looks for where it ends.
    contact = "Rückruf).\n[SQL: x\n\nThe above exception was: Frau Beispiel, 0151 2345678"
    report: Any = Report.__table__  # type: ignore[attr-defined]
    kept: list[str] = []
    failures: list[IntegrityError] = []

    def without_required_columns(session: Session) -> None:
        session.execute(
            insert(report).values(text="Drucker", customer_contact=contact, reporter_id="U1")
        )

    def with_a_duplicate_key(session: Session) -> None:
        for _ in range(2):
            session.add(InboxEntry(kind="command", dedupe_key=f"Kundin {contact}", body="{}"))
            session.flush()

    for store in (without_required_columns, with_a_duplicate_key):
        try:
            with Session(engine) as session:
                store(session)
                session.commit()
        except IntegrityError as failure:
            failures.append(failure)
            log.exception("storing failed")
            log.warning("storing failed: %s", failure)
            kept.append(without_database_details(f"{type(failure).__name__}: {failure}", failure))
    assert len(failures) == 2, "both statements must fail"
    output = capsys.readouterr().err
    assert "INSERT INTO report" in output and "INSERT INTO inbox_entry" in output
    assert output.count("SQL parameters hidden") == 4
    for shown in (output, *kept):
        for secret in ("0151", "Beispiel", "Kundin"):
            assert secret not in shown, (secret, shown)
    if engine.dialect.name == "postgresql":
        assert "DETAIL:  ***" in output and all("DETAIL:  ***" in text for text in kept)


@pytest.mark.parametrize("json_format", [False, True], ids=["text", "json"])
def test_an_error_nothing_caught_reaches_the_log_masked(
    capsys: pytest.CaptureFixture[str], engine: Engine, json_format: bool
) -> None:
    """An error no code caught, in a command or in one of the bot's threads, is written as a
    log record, not as Python's own traceback: its tokens and database details are masked
    like everything logged, and a log shipper reads it as one record."""
    configure_logging("INFO", json_format=json_format)

    def fails() -> None:
        raise RuntimeError(f"Slack said no to {BOT_TOKEN}")

    thread = threading.Thread(target=fails, name="outbox-sender")
    thread.start()
    thread.join(5)
    try:
        with Session(engine) as session:
            for _ in range(2):
                session.add(InboxEntry(kind="command", dedupe_key="Kundin 0151 2345678", body=""))
                session.flush()
    except IntegrityError:
        sys.excepthook(*sys.exc_info())  # as Python calls it when the command ends
    else:
        pytest.fail("the duplicate key must fail")
    output = capsys.readouterr().err
    assert "outbox-sender stopped by an error" in output
    assert "Slack said no to xoxb-***" in output and BOT_TOKEN not in output
    assert output.count("stopped by an error") == 2 and "IntegrityError" in output
    assert "0151" not in output and "Kundin" not in output
    if json_format:
        records = [json.loads(line) for line in output.splitlines()]
        assert [record["level"] for record in records] == ["ERROR", "CRITICAL"]
        assert all("Traceback" in record["exception"] for record in records)


@pytest.mark.parametrize(
    "command",
    [("config", "show"), ("audit",), ("webhooks", "list"), ("inbox",)],
    ids=lambda command: " ".join(command),
)
def test_every_command_names_an_invalid_setting_instead_of_a_traceback(
    command: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Whether a command reads the settings through the CLI's own check or by itself, an
    operator reads which setting is wrong and why, in one message, with the usage exit code."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'feedbot.db'}")
    monkeypatch.setenv("FEEDBOT_TIMEZONE", "Mars/Olympus")
    get_settings.cache_clear()
    try:
        code = main(list(command))
    finally:
        get_settings.cache_clear()
    error = capsys.readouterr().err
    assert code == 2, error
    assert error == (
        "feedbot: feedbot's settings are not valid:\n"
        "  FEEDBOT_TIMEZONE: unknown IANA timezone 'Mars/Olympus' (try Europe/Berlin)\n"
    )
