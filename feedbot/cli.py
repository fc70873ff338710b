"""The `feedbot` command: run the bot, migrate, read and change runtime configuration."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from feedbot.commands import command_engine
from feedbot.core import config as runtime_config
from feedbot.core import outbox
from feedbot.db import make_engine, normalise_url, session_scope, upgrade
from feedbot.election import JobRunnerElection, SingleProcessLock
from feedbot.errors import ConfigurationError, FeedbotError
from feedbot.logs import configure_logging
from feedbot.metrics import JOB_RUNNER, watch_inbox, watch_outbox
from feedbot.settings import SECRET_SOURCES, Settings, get_settings

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from feedbot.slack.server import Listener
    from feedbot.slack.work import Work

log = logging.getLogger("feedbot")

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
"""EX_UNAVAILABLE from sysexits.h: a service the command needs (the database) is not there."""


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        raise _invalid_settings(exc) from None


def _invalid_settings(exc: ValidationError) -> ConfigurationError:
    problems = "\n".join(
        f"  {'.'.join(str(p) for p in error['loc']).upper()}: "
        + error["msg"].removeprefix("Value error, ")
        for error in exc.errors()
    )
    return ConfigurationError(f"feedbot's settings are not valid:\n{problems}")


def _database_hint() -> str:
    """DATABASE_URL with any password hidden, for error messages."""
    try:
        url = make_url(normalise_url(get_settings().database_url))
    except Exception:
        return "DATABASE_URL"
    return url.render_as_string(hide_password=True)


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "not_allowed_token_type",
    }
)
"""Slack's answers to a token that will never work: stop at start-up, not at the first report."""


def _slack_refused(variable: str, exc: Exception) -> ConfigurationError:
    from slack_sdk.errors import SlackApiError

    error = exc.response.get("error") if isinstance(exc, SlackApiError) else None
    reason = f"Slack answered {error}" if error else f"Slack is unreachable ({type(exc).__name__})"
    return ConfigurationError(
        f"feedbot cannot connect to Slack: {reason} for {variable}.\n"
        f"  {variable}: {SECRET_SOURCES[variable]}"
    )


def _check_bot_token(client: WebClient) -> str | None:
    """Ask Slack (auth.test) whether the bot token works; the workspace's address if it does.

    A wrong or revoked token stops the start with one message. When Slack cannot be reached
    the bot starts anyway: what it owes Slack waits in the outbox.
    """
    from slack_sdk.errors import SlackApiError

    try:
        url = client.auth_test().get("url")
        return url if isinstance(url, str) else None
    except SlackApiError as exc:
        if exc.response.get("error") in TOKEN_ERRORS:
            raise _slack_refused("SLACK_BOT_TOKEN", exc) from None
        log.warning("could not check SLACK_BOT_TOKEN: %s", exc.response.get("error"))
    except OSError as exc:
        log.warning("Slack is unreachable (%s); starting anyway", type(exc).__name__)
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from slack_sdk.errors import SlackApiError

    from feedbot.scheduler import build_scheduler
    from feedbot.slack.app import build_app
    from feedbot.slack.client import make_interactive_client
    from feedbot.slack.deps import Deps
    from feedbot.slack.inbound_hooks import InboundHooks
    from feedbot.slack.inbox import Inbox
    from feedbot.slack.work import Work
    from feedbot.worker_process import WorkerProcess

    settings = _settings()
    socket_mode = args.socket or (not args.http and settings.socket_mode_available)
    settings.require_secrets(socket_mode=socket_mode)
    workspace_url = _check_bot_token(make_interactive_client(settings))
    engine = make_engine(settings.database_url)
    single_process = _lock_sqlite(engine)
    upgrade(engine, secret_key=settings.secret_key)
    watch_outbox(engine)
    watch_inbox(engine)
    deps = Deps(settings=settings, engine=engine, client=make_interactive_client(settings))
    # Slack may refuse the token later (uninstalled, revoked): every client then waits for
    # the token in the environment or .env to work again (read afresh each time).
    deps.access.load_token = lambda: Settings().slack_bot_token.get_secret_value()
    deps.workspace.remember(workspace_url)
    deps.access.check()  # a token refused before and accepted now (a reinstall): resume
    deps.access.watch()
    work: Work | None = None
    workers: WorkerProcess | None = None
    if settings.inbox_workers == "process":
        # The lock file stays held while the child lives, also after this process died: a
        # new `feedbot run` starts only once the old one's work has stopped.
        keep = (single_process.fileno(),) if single_process is not None else ()
        workers = WorkerProcess(_inbox_worker_command(workspace_url), pass_fds=keep)
        deps.on_commit = workers.wake_senders
        deps.access.on_restored = workers.access_restored  # the child's senders send
        inbox = Inbox(deps, elsewhere=workers)
    else:
        work = Work.assemble(deps)
        inbox = work.inbox
    app = build_app(settings, engine, deps=deps, inbox=inbox)
    scheduler = ScheduledJobs(build_scheduler(deps))
    election = None
    if engine.dialect.name == "postgresql":
        election = JobRunnerElection(
            engine.url.render_as_string(hide_password=False),
            on_elected=scheduler.resume,
            on_deposed=scheduler.pause,
        )
        election.start()
    else:
        scheduler.resume()
    if work is not None:
        work.start()  # first of all, its inbox takes over what a dead process left
    if workers is not None:
        inbox.start()  # no workers here: it watches how long requests wait
        workers.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = args.port or settings.port
    listener = None
    connection = None
    try:
        # In Socket Mode the listener serves only /healthz and /metrics: Slack's requests come
        # over the socket, and the signing secret may be unset or a stand-in.
        listener = _listen(
            None if socket_mode else app,
            engine,
            settings=settings,
            port=port,
            runs_jobs=scheduler.running,
            refused=deps.access.revocation,
            hooks=InboundHooks(deps),
            workers=workers.health if workers is not None else None,
        )
        if socket_mode:
            threading.Thread(target=listener.run, name="health-and-metrics", daemon=True).start()
            log.info("serving /healthz and /metrics on http://%s:%s", settings.host, listener.port)
            from feedbot.slack.socket_mode import SocketMode

            log.info("connecting to Slack in Socket Mode")
            connection = SocketMode(app, settings.slack_app_token.get_secret_value())
            try:
                connected = connection.connect()
            except (SlackApiError, OSError) as exc:
                raise _slack_refused("SLACK_APP_TOKEN", exc) from None
            if connected:
                log.info("connected to Slack in Socket Mode")
            else:
                log.warning("Slack has not answered yet; still trying to connect in Socket Mode")
            threading.Event().wait()  # Slack's requests are served by the connection's threads
        else:
            from feedbot.slack.server import EVENTS_PATH

            log.info(
                "serving Slack requests on http://%s:%s%s",
                settings.host,
                listener.port,
                EVENTS_PATH,
            )
            listener.run()
    finally:
        if connection is not None:
            connection.close()
        if socket_mode and listener is not None:
            listener.stop()
        if election is not None:
            election.stop()
        scheduler.shutdown()
        if work is not None:
            work.stop()
        if workers is not None:
            inbox.stop()
            workers.stop()
        if single_process is not None:
            single_process.release()
    return 0


def _inbox_worker_command(workspace_url: str | None) -> list[str]:
    command = [sys.executable, "-m", "feedbot", "inbox-worker"]
    if workspace_url:
        command += ["--workspace-url", workspace_url]
    return command


def cmd_inbox_worker(args: argparse.Namespace) -> int:
    """The inbox workers and senders of a `feedbot run`, in a process of their own
    (`feedbot.worker_process`): started by it, stopped by it, and gone when it is."""
    from feedbot.metrics import FORWARDERS
    from feedbot.slack.app import build_app
    from feedbot.slack.client import make_interactive_client
    from feedbot.slack.deps import Deps
    from feedbot.slack.work import Work
    from feedbot.worker_process import ParentLink

    if args.report_fd is None:
        raise ConfigurationError("feedbot inbox-worker is started by feedbot run, not by hand")
    ParentLink.yield_cpu()  # first: threads started later inherit the lower priority
    settings = _settings()
    engine = make_engine(settings.database_url)
    deps = Deps(settings=settings, engine=engine, client=make_interactive_client(settings))
    deps.access.load_token = lambda: Settings().slack_bot_token.get_secret_value()
    deps.workspace.remember(args.workspace_url)
    deps.access.watch()
    work = Work.assemble(deps, only_work=True)
    build_app(settings, engine, deps=deps, inbox=work.inbox)
    stopped = threading.Event()
    link = ParentLink(
        args.report_fd,
        on_wake=work.inbox.wake,
        on_send=work.wake_senders,
        on_quit=stopped.set,
        on_restored=deps.access.recheck_soon,
    )
    FORWARDERS.append(link.counted)
    # Its bot says when to stop: a SIGTERM or Ctrl-C sent to the whole process group (as
    # systemd and a terminal do) reaches the bot too, which then tells this process to quit.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    work.start()
    link.start()
    try:
        stopped.wait()
    finally:
        work.stop()
        deps.access.stop()
    return 0


def _listen(
    app: Any,
    engine: Any,
    *,
    settings: Settings,
    port: int,
    runs_jobs: Callable[[], bool],
    refused: Callable[[], Any],
    hooks: Any = None,
    workers: Callable[[], Any] | None = None,
) -> Listener:
    """The HTTP listener, bound now so that an address in use stops the start with one line."""
    from feedbot.slack.server import Listener

    host = settings.host
    try:
        return Listener(
            app,
            engine,
            host=host,
            port=port,
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            runs_jobs=runs_jobs,
            refused=refused,
            hooks=hooks,
            workers=workers,
        )
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(
            f"feedbot cannot listen on {host}:{port}: {reason}. Check HOST and PORT "
            "(or --port), and that no other process uses that port."
        ) from None


def _lock_sqlite(engine: Any) -> SingleProcessLock | None:
    """On SQLite, one `feedbot run` per database file (the CLI commands stay usable)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    lock = SingleProcessLock(str(engine.url.database))
    lock.acquire()
    return lock


class ScheduledJobs:
    """The scheduler, started paused and resumed only while this process may run jobs."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._leading = False
        scheduler.start(paused=True)

    def resume(self) -> None:
        self._leading = True
        JOB_RUNNER.set(1)
        self.scheduler.resume()

    def pause(self) -> None:
        self._leading = False
        JOB_RUNNER.set(0)
        self.scheduler.pause()

    def running(self) -> bool:
        return self._leading

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    engine = command_engine(_settings())
    print(f"database is up to date ({engine.url.render_as_string(hide_password=True)})")
    return 0


def _engine() -> Any:
    return command_engine(_settings())


def cmd_config_show(args: argparse.Namespace) -> int:
    settings = _settings()
    with Session(_engine()) as session:
        current = runtime_config.load_config(
            session,
            bootstrap_admins=tuple(settings.feedbot_admins),
            default_timezone=settings.feedbot_timezone,
        )
    width = max(len(key) for key in runtime_config.KEYS)
    for key, spec in runtime_config.KEYS.items():
        value = runtime_config.format_value(getattr(current, key))
        print(f"{key:<{width}}  {value or '-':<40}  # {spec.help}")
    return 0


def cmd_config_get(args: argparse.Namespace) -> int:
    runtime_config.require_key(args.key)
    with Session(_engine()) as session:
        current = runtime_config.load_config(session)
    print(runtime_config.format_value(getattr(current, args.key)))
    return 0


def cmd_config_set(args: argparse.Namespace) -> int:
    with session_scope(_engine()) as session:
        value = runtime_config.set_value(session, key=args.key, raw=args.value, actor="cli")
    print(f"{args.key} = {runtime_config.format_value(value)}")
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from feedbot.slack.manifest import manifest_yaml

    sys.stdout.write(manifest_yaml(http_url=args.http_url))
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    from feedbot.core import access

    settings = _settings()
    with Session(_engine()) as session:
        counts = outbox.backlog(session)
        print(
            ", ".join(f"{status}: {count}" for status, count in sorted(counts.items())) or "empty"
        )
        refused = access.revocation(session, token=settings.slack_bot_token.get_secret_value())
        if refused is not None:
            print(
                f"nothing is sent: Slack refuses the bot token since "
                f"{refused.revoked_at:%Y-%m-%d %H:%M} UTC ({refused.reason}). Reinstall the app "
                "and put its new bot token in SLACK_BOT_TOKEN; the running bot resumes by "
                "itself within a minute and sends everything waiting."
            )
        for entry in outbox.failures(session):
            print(
                f"failed #{entry.id} {entry.method} to {entry.conversation} ({entry.purpose}): {entry.last_error}"
            )
        from feedbot.commands.webhooks import print_health

        print_health(session)
    return 0


def cmd_secret_key(args: argparse.Namespace) -> int:
    """Print a new FEEDBOT_SECRET_KEY, or with --ensure make sure an env file holds one."""
    from pathlib import Path

    from feedbot.core.identity import new_secret

    if not args.ensure:
        print(new_secret())
        return 0
    path = Path(args.ensure)
    if os.environ.get("FEEDBOT_SECRET_KEY", "").strip():
        return 0  # set in the environment, which wins over the file
    template = path.with_name(".env.example")
    lines = path.read_text().splitlines() if path.exists() else []
    if not path.exists() and template.exists():
        lines = template.read_text().splitlines()
    found = [i for i, line in enumerate(lines) if line.strip().startswith("FEEDBOT_SECRET_KEY=")]
    if found and lines[found[-1]].split("=", 1)[1].strip():
        return 0
    line = f"FEEDBOT_SECRET_KEY={new_secret()}"
    if found:
        lines[found[-1]] = line
    else:
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    print(
        f"wrote a new FEEDBOT_SECRET_KEY to {path}: keep it safe and keep it (a lost key only "
        "means anonymous reporters no longer hear back)",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedbot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="connect to Slack and serve (applies migrations first)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--socket", action="store_true", help="Socket Mode (needs SLACK_APP_TOKEN)")
    mode.add_argument("--http", action="store_true", help="serve HTTP on PORT")
    run.add_argument("--port", type=int, help="HTTP port (default: PORT, 3000)")
    run.set_defaults(handler=cmd_run)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply pending migrations").set_defaults(handler=cmd_db_upgrade)

    config = commands.add_parser("config", help="runtime configuration").add_subparsers(
        dest="config_command", required=True
    )
    config.add_parser("show", help="every setting and its value").set_defaults(
        handler=cmd_config_show
    )
    get = config.add_parser("get", help="one setting's value")
    get.add_argument("key")
    get.set_defaults(handler=cmd_config_get)
    set_ = config.add_parser("set", help="change a setting (takes effect within seconds)")
    set_.add_argument("key")
    set_.add_argument("value")
    set_.set_defaults(handler=cmd_config_set)

    manifest = commands.add_parser("manifest", help="print the Slack app manifest (YAML)")
    manifest.add_argument("--http-url", help="public base URL for HTTP mode (default: Socket Mode)")
    manifest.set_defaults(handler=cmd_manifest)

    commands.add_parser("outbox", help="messages waiting for or refused by Slack").set_defaults(
        handler=cmd_outbox
    )
    worker = commands.add_parser("inbox-worker")  # started by `feedbot run`; left out of help
    worker.add_argument("--report-fd", type=int)
    worker.add_argument("--workspace-url")
    worker.set_defaults(handler=cmd_inbox_worker)
    secret = commands.add_parser(
        "secret-key", help="make the key that seals who acted anonymously (FEEDBOT_SECRET_KEY)"
    )
    secret.add_argument(
        "--ensure", metavar="ENV_FILE", help="write one into ENV_FILE unless one is set already"
    )
    secret.set_defaults(handler=cmd_secret_key)
    from feedbot.commands import admin, digest, inbox, reminders, webhooks

    for feature in (digest, reminders, admin, inbox, webhooks):
        feature.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        level, secrets, json_format = "INFO", [], False
        with contextlib.suppress(ValidationError):
            settings = get_settings()
            level, secrets = settings.log_level, settings.secret_values()
            json_format = settings.log_format == "json"
        configure_logging(level, secrets=secrets, json_format=json_format)
        return handler(args)
    except FeedbotError as exc:
        print(f"feedbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        # A command that read the settings itself (`get_settings()`) meets them invalid:
        # the same message as for the commands that go through `_settings`.
        if exc.title != Settings.__name__:
            raise
        print(f"feedbot: {_invalid_settings(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OperationalError as exc:
        # Unreachable server, wrong password, unwritable SQLite path: an operator's problem,
        # worth one line rather than a traceback.
        print(
            f"feedbot: cannot use the database ({_database_hint()}): {_first_line(exc.orig)}\n"
            "Check DATABASE_URL and that the database server is running.",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
