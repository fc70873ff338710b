"""The digest feature: weekly posts for leaders and all staff, their schedule, and
`/feedback digest` (a preview only the asking leader sees).

Sending is exactly once per channel and week: the content is built first (reading only),
then one short transaction inserts the `DigestRun` row and queues every message and file in
the outbox. The unique key on the run decides between replicas and restarts; the outbox then
delivers each queued entry once. A digest whose time passed while nothing ran is sent by the
next catch-up, marked late.

Scheduling: the scheduler's `digests` job (`feedbot.jobs.send_due_digests`) runs every
minute, like every other job, and sends each channel's digest once its weekday and time in
its timezone have come (`Schedule.due_at`, DST-correct): within a minute of it, from a
configuration re-read each time (a changed schedule applies at once). A time in the spring's
DST gap means one hour later on the clock, one that repeats in the autumn its first
occurrence: one digest a week either way, and one missed while no bot ran goes out late.
"""

from __future__ import annotations

import base64
import gzip
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from feedbot.core import digest as core
from feedbot.core import outbox
from feedbot.core.config import RuntimeConfig
from feedbot.core.digest import DigestChannel, DigestKind, Schedule
from feedbot.db import session_scope
from feedbot.errors import Conflict, FeedbotError, NotFound
from feedbot.models import DigestRun
from feedbot.slack import delivery
from feedbot.slack.deps import Deps
from feedbot.slack.features.common import explain, subcommand
from feedbot.slack.i18n import t
from feedbot.slack.ids import COMMAND
from feedbot.slack.views import Message
from feedbot.slack.views import chart as chart_view
from feedbot.slack.views import digest as views
from feedbot.slack.views.notices import build_plain
from feedbot.slack.web_api import FILE_UPLOAD
from feedbot.slack.workspace import Workspace

log = logging.getLogger(__name__)

LATE_AFTER = timedelta(minutes=5)
"""A digest sent more than this after its time (no bot ran then) says it is late."""


def register(app: App, deps: Deps) -> None:
    app.command(COMMAND, matchers=[subcommand("digest")])(_preview_command(deps))


# --------------------------------------------------------------------------- content


@dataclass(frozen=True)
class Upload:
    """A file that goes out with a digest: in the channel, or in the digest's thread."""

    filename: str
    title: str
    content: bytes
    comment: str | None = None
    alt_text: str | None = None
    in_thread: bool = False
    failure_note: str | None = None
    """Posted in the digest's thread if Slack refuses the file; `{error}` is Slack's answer."""


@dataclass(frozen=True)
class Composed:
    message: Message
    uploads: list[Upload] = field(default_factory=list)


def compose(
    session: Session,
    *,
    kind: DigestKind,
    period: str,
    schedule: Schedule,
    locale: str,
    now: datetime,
    link_base: str | None,
    late_due: datetime | None = None,
    preview: bool = False,
    files: bool = True,
    confidential: tuple[str, ...] = (),
    covers: str | None = None,
    routes: tuple[str, ...] = (),
) -> Composed:
    """The message (and, for leaders, the chart and the CSV unless `files` is false or it is
    a `preview`) of one digest. Reads only. An all-staff post leaves out the `confidential`
    categories; a route's digest (`covers`) counts only its reports, the company's adds a
    line per route in `routes`."""
    zone = schedule.zone
    if kind == DigestKind.ALLSTAFF:
        post = core.build_you_said_we_did(
            session, period=period, zone=zone, confidential=confidential
        )
        message = views.build_you_said_we_did(
            post, locale=locale, late_due=late_due, preview=preview
        )
        return Composed(message)
    if preview or not files:
        digest = core.build_digest(
            session, period=period, zone=zone, now=now, channel=covers, routes=routes
        )
        return Composed(_leaders_message(digest, locale, link_base, late_due, preview))
    # The week's CSV is read on a connection of its own while the digest is computed: the
    # databases do most of the work outside Python's GIL (SQLite's driver releases it while
    # stepping, PostgreSQL works in another process), so the two largely overlap.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-csv") as pool:
        reading = pool.submit(_week_csv, session.get_bind(), period, zone, link_base, covers)
        digest = core.build_digest(
            session, period=period, zone=zone, now=now, channel=covers, routes=routes
        )
        message = _leaders_message(digest, locale, link_base, late_due, preview)
        if digest.empty:
            return Composed(message)
        chart = chart_view.render_chart(digest.trend, locale=locale)
        table = reading.result()
    week = views.week_number(period)
    return Composed(
        message,
        [
            Upload(
                filename=f"feedbot-trend-{period}.png",
                title=t(locale, "digest.chart_title"),
                content=chart,
                comment=chart_view.chart_comment(digest.trend, locale),
                alt_text=t(locale, "digest.chart_alt"),
                failure_note=_failure_note(locale, t(locale, "digest.chart_title")),
            ),
            Upload(
                filename=f"feedbot-reports-{period}.csv",
                title=t(locale, "digest.csv_title", week=week),
                content=table,
                comment=t(locale, "digest.csv_comment", week=week),
                in_thread=True,
                failure_note=_failure_note(locale, t(locale, "digest.csv_title", week=week)),
            ),
        ],
    )


def _failure_note(locale: str, title: str) -> str:
    return t(locale, "digest.attachment_failed", title=title, error="{error}")


def _leaders_message(
    digest: core.Digest,
    locale: str,
    link_base: str | None,
    late_due: datetime | None,
    preview: bool,
) -> Message:
    return views.build_digest_message(
        digest, locale=locale, link_base=link_base, late_due=late_due, preview=preview
    )


def _week_csv(
    bind: Any, period: str, zone: ZoneInfo, link_base: str | None, covers: str | None
) -> bytes:
    with Session(bind) as session:
        return core.week_csv(session, period=period, zone=zone, link_base=link_base, channel=covers)


# --------------------------------------------------------------------------- sending


def enqueue_upload(
    session: Session,
    *,
    conversation: str,
    upload: Upload,
    now: datetime,
    purpose: str,
    thread_of: outbox.Entry | None = None,
    notice_under: outbox.Entry | None = None,
) -> outbox.Queued:
    """Queue a file like any message; the sender uploads it with `files_upload_v2`. If Slack
    refuses it for good, its `failure_note` is posted under `notice_under`."""
    payload: dict[str, Any] = {
        "filename": upload.filename,
        "title": upload.title,
        "content_gzip_base64": base64.b64encode(gzip.compress(upload.content, 1)).decode(),
    }
    if upload.comment:
        payload["initial_comment"] = upload.comment
    if upload.alt_text:
        payload["alt_txt"] = upload.alt_text
    return outbox.enqueue(
        session,
        conversation=conversation,
        method=FILE_UPLOAD,
        payload=payload,
        purpose=purpose,
        thread_of=thread_of,
        on_failure=build_plain(upload.failure_note).to_payload() if upload.failure_note else None,
        on_failure_thread_of=notice_under,
        now=now,
    )


def send_digest(
    engine: Engine,
    *,
    target: DigestChannel,
    period: str,
    now: datetime,
    link_base: str | None,
    late: bool = False,
    force: bool = False,
    on_commit: Callable[[], None] = lambda: None,
) -> DigestRun:
    """Send one digest now: `Conflict` if it was sent already (unless `force`).

    The content is built outside the write transaction, which then only inserts the run
    and the outbox entries: on SQLite the write lock is held for milliseconds, not for the
    seconds a large week takes to summarise. Two processes may both build; one sends.
    """
    kind = target.kind
    with Session(engine) as session:
        if not force and core.already_sent(
            session, kind=kind, channel=target.channel, period=period
        ):
            raise Conflict(
                f"the {kind} digest of {period} was already sent to {target.channel}; "
                "use --force to send it again",
                code="digest_already_sent",
            )
        composed = compose(
            session,
            kind=kind,
            period=period,
            schedule=target.schedule,
            locale=target.locale,
            now=now,
            link_base=link_base,
            late_due=target.schedule.due_at(period) if late else None,
            confidential=target.confidential,
            covers=target.covers,
            routes=target.routes,
        )
    try:
        with session_scope(engine) as session:
            run = core.claim_run(
                session,
                kind=kind,
                channel=target.channel,
                period=period,
                now=now,
                late=late,
                force=force,
            )
            post = delivery.post(
                session,
                conversation=target.channel,
                message=composed.message,
                now=now,
                purpose=f"digest_{kind}",
            )
            for upload in composed.uploads:
                enqueue_upload(
                    session,
                    conversation=target.channel,
                    upload=upload,
                    now=now,
                    purpose=f"digest_{kind}_file",
                    thread_of=post if upload.in_thread else None,
                    notice_under=post,
                )
    except IntegrityError:
        raise Conflict(
            f"the {kind} digest of {period} for {target.channel} was just sent by another process",
            code="digest_already_sent",
        ) from None
    on_commit()
    return run


def send_due(deps: Deps, *, now: datetime | None = None) -> list[DigestRun]:
    """Send every digest that is due and not sent yet, each channel on its own schedule; one
    sent more than `LATE_AFTER` after its time (no bot ran) says it comes late. Only the
    latest due week is caught up, never a backlog, and never a week that ended before its
    channel was configured.
    """
    now = now or deps.clock()
    runs = []
    link_base: str | None = None
    targets = core.digest_channels(deps.config())
    with session_scope(deps.engine) as session:
        since = {
            target: core.configured_since(session, target=target, now=now) for target in targets
        }
        core.forget_unsubscribed(session, targets=targets)
    for target in targets:
        period = target.schedule.due_period(now)
        due = target.schedule.due_at(period)
        if not core.covers_only_configured_time(period, target.schedule.zone, since[target]):
            continue
        with Session(deps.engine) as session:
            if core.already_sent(session, kind=target.kind, channel=target.channel, period=period):
                continue
        link_base = link_base or deps.workspace.fetch()
        try:
            run = send_digest(
                deps.engine,
                target=target,
                period=period,
                now=now,
                link_base=link_base,
                late=now - due > LATE_AFTER,
                on_commit=deps.on_commit,
            )
        except Conflict as exc:
            log.info("%s", exc)
            continue
        except Exception:
            log.exception("the %s digest of %s for %s failed", target.kind, period, target.channel)
            continue
        log.info(
            "queued the %s digest of %s for %s%s",
            target.kind,
            period,
            target.channel,
            " (late)" if run.late else "",
        )
        runs.append(run)
    return runs


def workspace_url(client: WebClient) -> str | None:
    """The workspace's web address (`https://acme.slack.com/`), for links to report cards,
    asked of Slack now (`auth.test`); None when Slack cannot say: no links then."""
    return Workspace(client).fetch()


# --------------------------------------------------------------------------- /feedback digest


def _preview_command(deps: Deps) -> Callable[..., None]:
    def handle(ack: Ack, body: dict[str, Any]) -> None:
        user_id = body["user_id"]
        locale = deps.locale_for(user_id)
        config = deps.config()
        led = config.led_channels(user_id)
        if not led:
            ack(text=t(locale, "digest.leaders_only"))
            return
        # A route's own leaders see their route's digest; leaders of the whole company theirs.
        covers = None if config.is_leader(user_id) else led[0]
        words = str(body.get("text") or "").split()[1:]
        try:
            message = preview(
                deps,
                config=config,
                week=words[0] if words else None,
                locale=locale,
                covers=covers,
            )
        except FeedbotError as error:
            ack(text=explain(error, locale))
            return
        ack(**message.to_payload())

    return handle


def preview(
    deps: Deps,
    *,
    config: RuntimeConfig,
    week: str | None,
    locale: str,
    covers: str | None = None,
) -> Message:
    """The leaders' digest of `week` (default: the latest due), as only the asker sees it:
    the company's, or with `covers` the route's."""
    schedule = Schedule.parse(config.digest_schedule, config.zone)
    routes = next(
        (
            each.routes
            for each in core.digest_channels(config)
            if each.kind == DigestKind.LEADERSHIP
        ),
        (),
    )
    now = deps.clock()
    period = core.parse_period(week) if week else schedule.due_period(now)
    with Session(deps.engine) as session:
        return compose(
            session,
            kind=DigestKind.LEADERSHIP,
            period=period,
            schedule=schedule,
            locale=locale,
            now=now,
            link_base=deps.workspace.fetch(),
            preview=True,
            covers=covers,
            routes=() if covers else routes,
        ).message


def targets_for(config: RuntimeConfig, channel: str | None) -> list[DigestChannel]:
    """The digest channels to act on: all of them, or the one named (`NotFound` otherwise)."""
    targets = core.digest_channels(config)
    if channel is None:
        return targets
    chosen = [target for target in targets if target.channel == channel]
    if not chosen:
        configured = ", ".join(f"{t.channel} ({t.kind})" for t in targets) or "none"
        raise NotFound(
            f"{channel} gets no digest; digest channels: {configured} "
            "(set leadership_channel or allstaff_channel with `feedbot config set`)"
        )
    return chosen


def leadership_target(config: RuntimeConfig) -> DigestChannel:
    """The first leadership digest channel (`NotFound` when none is configured)."""
    for target in core.digest_channels(config):
        if target.kind == DigestKind.LEADERSHIP:
            return target
    raise NotFound(
        "no leadership channel is configured; set one with "
        "`feedbot config set leadership_channel C0123ABCD`"
    )
