"""Sending digests (issue 4): once per channel and week across restarts, crashes and two
processes; late catch-up; the cron schedule and its changes; `/feedback digest`; the
all-staff "you said, we did"; the CLI and `feedbot demo`.

The bot runs against the fake Slack; the clock is set to the digest's moment. Week 2026-W47
is due on Monday 23 November 2026 at 08:00 in Berlin (07:00 UTC).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from feedbot import jobs
from feedbot.cli import main as feedbot
from feedbot.core import outbox
from feedbot.core.digest import DigestKind, week_csv
from feedbot.models import DigestRun, OutboxMessage, Report
from feedbot.settings import get_settings
from feedbot.slack.features import digest as feature
from feedbot.slack.views import chart as chart_view
from tests.harness import ALICE, BOB, CAROL, LEADER, LEADERSHIP, Bot
from tests.test_digest import BERLIN, PERIOD, add, deps_for, png_size, utc

DUE = utc(11, 23, 7)
ALLSTAFF = "CALLSTAFF1"


def fill_week(bot: Bot) -> None:
    """Three reports filed with `/feedback` during the week, their cards delivered."""
    for hour, text in enumerate(
        [
            "Fritzbox 7590 startet ständig neu",
            "Die Fritzbox 7590 startet dauernd neu",
            "Roaming-Option doppelt berechnet",
        ]
    ):
        bot.clock.now = utc(11, 17, 9 + hour)
        assert bot.command(ALICE, text).status == 200
    bot.drain()


def outbox_size(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(OutboxMessage)).one()


def runs(engine: Engine) -> list[tuple[str, str, str, bool]]:
    with Session(engine) as session:
        return [
            (run.kind, run.channel, run.period, run.late)
            for run in session.exec(select(DigestRun).order_by(col(DigestRun.id)))
        ]


def digests_in(bot: Bot, channel: str = LEADERSHIP) -> list[dict[str, Any]]:
    return [
        m
        for m in bot.slack.messages(channel)
        if m["text"].startswith(("Weekly digest", "You said")) and not m.get("thread_ts")
    ]


def test_the_digest_goes_out_with_chart_and_csv_once_across_restarts(bot: Bot) -> None:
    bot.setup_team()
    fill_week(bot)
    bot.clock.now = DUE
    sent = feature.send_due(deps_for(bot))
    assert [(run.period, run.late) for run in sent] == [(PERIOD, False)]
    assert feature.send_due(deps_for(bot)) == [], "same process, same week"
    assert feature.send_due(deps_for(bot)) == [], "a restarted process"
    bot.drain()
    (digest,) = digests_in(bot)
    assert digest["text"] == "Weekly digest, week 47: 3 new, 0 resolved, 3 still open."
    assert "archives/CLEAD0001/p" in json.dumps(digest["blocks"]), "links to the cards"
    chart, table = bot.slack.files
    assert chart["filename"] == "feedbot-trend-2026-W47.png" and chart["thread_ts"] is None
    assert chart["channel_id"] == LEADERSHIP and png_size(chart["content"])[0] >= 1000
    assert table["filename"] == "feedbot-reports-2026-W47.csv"
    assert table["thread_ts"] == digest["ts"], "the CSV sits in the digest's thread"
    rows = list(csv.reader(io.StringIO(table["content"].decode("utf-8-sig"))))
    assert len(rows) == 4 and rows[0][0] == "reference"
    with Session(bot.engine) as session:
        assert table["content"] == week_csv(
            session, period=PERIOD, zone=BERLIN, link_base="https://frontline.slack.com/"
        )
    assert all(
        row[-1].startswith("https://frontline.slack.com/archives/CLEAD0001/p") for row in rows[1:]
    )
    assert runs(bot.engine) == [("leadership", LEADERSHIP, PERIOD, False)]


def test_a_refused_attachment_is_said_in_the_digest_and_listed_by_feedbot_outbox(
    bot: Bot, tmp_path: Path
) -> None:
    """An app installed from an older manifest, without files:write: the digest still goes
    out, and says where its chart and CSV went, instead of only a log line saying so."""
    bot.slack.scopes = bot.slack.scopes - {"files:write"}
    bot.setup_team()
    fill_week(bot)
    bot.clock.now = DUE
    feature.send_due(deps_for(bot))
    bot.drain()
    (digest,) = digests_in(bot)
    assert bot.slack.files == []
    notes = [
        m["text"] for m in bot.slack.messages(LEADERSHIP) if m.get("thread_ts") == digest["ts"]
    ]
    assert len(notes) == 2, notes
    assert all("could not be attached" in note and "missing_scope" in note for note in notes)
    assert any(note.startswith(":warning: Reports per week by category") for note in notes)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    env["DATABASE_URL"] = bot.engine.url.render_as_string(hide_password=False)
    listed = subprocess.run(
        [sys.executable, "-m", "feedbot", "outbox"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    failed = [line for line in listed.splitlines() if line.startswith("failed #")]
    assert len(failed) == 2 and all("missing_scope (files:write" in line for line in failed)


def test_one_digest_a_week_never_before_its_time(bot: Bot) -> None:
    bot.setup_team()
    deps = deps_for(bot)
    bot.clock.now = DUE
    assert [run.period for run in feature.send_due(deps)] == [PERIOD]
    bot.clock.now = utc(11, 30, 6, 59)
    assert feature.send_due(deps) == []
    bot.clock.now = utc(11, 30, 7)
    assert [run.period for run in feature.send_due(deps)] == ["2026-W48"]
    bot.drain()
    assert [m["text"].split(":")[0] for m in digests_in(bot)] == [
        "Weekly digest, week 47",
        "Weekly digest, week 48",
    ]
    assert bot.slack.files == [], "empty weeks: a short digest, no chart or CSV"


def test_the_every_minute_job_sends_on_time_at_the_schedule_of_the_moment(bot: Bot) -> None:
    bot.setup_team()
    fill_week(bot)
    deps = deps_for(bot)
    bot.clock.now = DUE - timedelta(minutes=1)
    jobs.send_due_digests(deps)
    assert runs(bot.engine) == [], "a minute early: nothing yet"
    bot.clock.now = DUE + timedelta(seconds=40)
    jobs.send_due_digests(deps)
    jobs.send_due_digests(deps)
    assert runs(bot.engine) == [("leadership", LEADERSHIP, PERIOD, False)], "once, on time"

    # Moved to Friday 16:30 in New York, with no restart: week 48 goes out then, not Monday.
    bot.configure(digest_schedule="fri 16:30", timezone="America/New_York")
    friday = datetime(2026, 12, 4, 21, 30, tzinfo=UTC)  # 16:30 EST
    for moment in (utc(11, 30, 7), friday - timedelta(minutes=1)):
        bot.clock.now = moment
        jobs.send_due_digests(deps)
    assert len(runs(bot.engine)) == 1, "not at the old time, not before the new one"
    bot.clock.now = friday
    jobs.send_due_digests(deps)
    assert runs(bot.engine)[-1] == ("leadership", LEADERSHIP, "2026-W48", False)


def test_a_digest_missed_while_down_goes_out_late_once_when_back(bot: Bot) -> None:
    bot.setup_team()
    fill_week(bot)
    deps = deps_for(bot)
    bot.clock.now = DUE + timedelta(hours=3)
    jobs.send_due_digests(deps)
    jobs.send_due_digests(deps_for(bot))
    assert runs(bot.engine) == [("leadership", LEADERSHIP, PERIOD, True)]
    bot.drain()
    (digest,) = digests_in(bot)
    assert "This digest comes late" in json.dumps(digest["blocks"])


def test_a_fresh_install_opens_with_no_digest_of_a_week_before_it(bot: Bot) -> None:
    """Installed on Wednesday of week 48, with reports of week 47 already in the database (a
    pilot, an import): no late digest of week 47 is the first thing leaders read; week 48's
    goes out on time. A channel added later starts its digests from then on, too."""
    fill_week(bot)  # week 47, before anyone configured a leadership channel
    bot.clock.now = utc(11, 25, 10)
    bot.setup_team()
    deps = deps_for(bot)
    for hours in (0, 1, 24, 110):  # the every-minute job, until Sunday night
        bot.clock.now = utc(11, 25, 10) + timedelta(hours=hours)
        jobs.send_due_digests(deps)
    assert runs(bot.engine) == []
    bot.clock.now = utc(11, 30, 7)
    assert [run.period for run in feature.send_due(deps)] == ["2026-W48"]

    bot.clock.now = utc(12, 2, 10)  # Wednesday of week 49: all-staff posts begin
    bot.configure(allstaff_channel=ALLSTAFF)
    bot.slack.add_channel(ALLSTAFF, name="all-staff")
    bot.clock.now = utc(12, 2, 11)
    jobs.send_due_digests(deps)
    assert [(kind, period) for kind, _, period, _ in runs(bot.engine)] == [
        ("leadership", "2026-W48")
    ], "no all-staff post about week 48, which ended before the channel was set"


def test_a_crash_before_commit_leaves_nothing_and_the_next_run_sends(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot.setup_team()
    fill_week(bot)
    bot.clock.now = DUE

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("the process died while drawing")

    real = chart_view.render_chart
    monkeypatch.setattr(chart_view, "render_chart", broken)
    before = outbox_size(bot.engine)
    assert feature.send_due(deps_for(bot)) == []
    assert outbox_size(bot.engine) == before and runs(bot.engine) == []
    monkeypatch.setattr(chart_view, "render_chart", real)
    assert len(feature.send_due(deps_for(bot))) == 1
    bot.drain()
    assert len(digests_in(bot)) == 1 and len(bot.slack.files) == 2


def test_a_crash_while_delivering_does_not_post_the_digest_twice(bot: Bot) -> None:
    bot.setup_team()
    fill_week(bot)
    bot.clock.now = DUE
    feature.send_due(deps_for(bot))
    # A sender claims the digest, Slack accepts the post, and the process dies before it
    # can record that: the entry stays "sending" with a lease.
    with Session(bot.engine, expire_on_commit=False) as session:
        claims = outbox.claim_due(session, now=bot.clock())
        (claim,) = [c for c in claims if c.entry.purpose == "digest_leadership"]
        payload = bot.sender._prepare(session, claim.entry)
    bot.sender.client.api_call("chat.postMessage", json=payload)
    bot.clock.advance(minutes=2)  # the lease ran out; another sender takes over
    bot.drain()
    assert len(digests_in(bot)) == 1
    assert [f["filename"][-4:] for f in bot.slack.files] == [".png", ".csv"]


SENDER = """
import sys, time
from datetime import datetime, timezone
from sqlmodel import Session
from feedbot.core.config import load_config
from feedbot.core.digest import digest_channels
from feedbot.errors import Conflict
from feedbot.db import make_engine
from feedbot.slack.features.digest import send_digest

engine = make_engine(sys.argv[1])
with Session(engine) as session:
    (target,) = digest_channels(load_config(session))
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
try:
    send_digest(engine, target=target, period="2026-W47",
                now=datetime(2026, 11, 23, 7, tzinfo=timezone.utc), link_base=None)
    print("sent")
except Conflict:
    print("conflict")
"""


def test_two_processes_at_once_send_one_digest(bot: Bot, database_url: str) -> None:
    bot.setup_team()
    start = time.time() + 3  # both processes have imported feedbot by then
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SENDER, database_url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outcomes = sorted(process.communicate(timeout=60)[0].strip() for process in processes)
    assert outcomes == ["conflict", "sent"], [p.stderr for p in processes]
    assert runs(bot.engine) == [("leadership", LEADERSHIP, PERIOD, False)]
    with Session(bot.engine) as session:
        queued = session.exec(
            select(OutboxMessage.purpose).where(col(OutboxMessage.purpose).startswith("digest"))
        ).all()
    assert queued == ["digest_leadership"], "a quiet week: the message alone"


def test_a_schedule_in_the_dst_gap_or_repeat_sends_once_a_week(bot: Bot) -> None:
    """`sun 02:30` does not exist on 29 March and happens twice on 25 October 2026. The job
    runs every minute through both Sunday nights (and every three hours otherwise): one
    digest per week all the same, each on time."""
    bot.clock.now = utc(3, 1, 0)  # configured before the weeks it looks at
    bot.setup_team()
    bot.configure(digest_schedule="sun 02:30")
    deps = deps_for(bot)
    moments: set[datetime] = set()
    for start in (utc(3, 15, 0), utc(10, 11, 0)):
        moments |= {start + timedelta(hours=3 * step) for step in range(224)}
        for sunday in range(4):
            night = start + timedelta(weeks=sunday)  # each Sunday, 00:00 to 04:00 UTC
            moments |= {night + timedelta(minutes=minute) for minute in range(240)}
    for moment in sorted(moments):
        bot.clock.now = moment
        jobs.send_due_digests(deps)
    sent = [(period, late) for _, _, period, late in runs(bot.engine)]
    assert len(sent) == len({period for period, _ in sent}), "never twice"
    # W09 and W39 fell due before each stretch began: the catch-up sends them, marked late.
    assert sent == [
        ("2026-W09", True),
        ("2026-W10", False),
        ("2026-W11", False),
        ("2026-W12", False),
        ("2026-W13", False),
        ("2026-W39", True),
        ("2026-W40", False),
        ("2026-W41", False),
        ("2026-W42", False),
        ("2026-W43", False),
    ]


def test_leaders_preview_the_digest_in_slack_only_they_see_it(bot: Bot) -> None:
    bot.setup_team()
    fill_week(bot)
    bot.clock.now = DUE + timedelta(days=1)
    response = bot.command(LEADER, "digest")
    assert response.status == 200
    body = json.loads(response.body)
    assert body["text"].startswith("Weekly digest, week 47")
    assert "Preview, only you can see it" in json.dumps(body["blocks"])
    assert body.get("response_type", "ephemeral") == "ephemeral"
    older = json.loads(bot.command(LEADER, "digest 2026-W46").body)
    assert older["text"].startswith("Weekly digest, week 46")
    assert bot.command(LEADER, "digest yesterday").body == "Enter a week like 2026-W47."
    refused = bot.command(BOB, "digest").body
    assert refused == "Den Wochenbericht sehen nur Führungskräfte und Admins."
    assert runs(bot.engine) == [] and digests_in(bot) == [], "a preview sends nothing"


def test_all_staff_hear_what_was_resolved_and_who_to_thank(bot: Bot) -> None:
    bot.setup_team()
    bot.configure(allstaff_channel=ALLSTAFF)
    bot.slack.add_channel(ALLSTAFF, name="all-staff")
    with Session(bot.engine) as session:
        add(
            session,
            "Drucker druckt nicht",
            category="Shop & tools",
            location="Leipzig",
            created=utc(11, 16, 9),
            resolved=timedelta(days=1),
            me_too=2,
            reporter=BOB,
            note="Neuer Drucker ist da.",
        )
        add(
            session,
            "Mein Chef ignoriert die kaputte Kasse",
            category="Other",
            location="Halle",
            created=utc(11, 17, 9),
            resolved=timedelta(days=1),
            anonymous=True,
            reporter=CAROL,
            note="Kasse getauscht.",
        )
        session.commit()
    bot.clock.now = DUE
    sent = feature.send_due(deps_for(bot))
    assert sorted(run.kind for run in sent) == ["allstaff", "leadership"]
    bot.drain()
    (post,) = digests_in(bot, ALLSTAFF)
    body = json.dumps(post, ensure_ascii=False)
    assert "You said, we did · week 47" in body and "*2* problems" in body
    assert f"<@{BOB}>" in body and "Neuer Drucker ist da." in body
    assert CAROL not in body and "Chef" not in body and "Kasse getauscht." in body
    assert [f["channel_id"] for f in bot.slack.files] == [LEADERSHIP, LEADERSHIP]


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("FEEDBOT_TIMEZONE", "Europe/Berlin")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_preview_prints_text_json_and_a_builder_link(
    bot: Bot, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    bot.setup_team()
    fill_week(bot)
    assert feedbot(["digest", "preview", "--week", "2026-W47"]) == 0
    out = capsys.readouterr().out
    assert "# leadership digest of 2026-W47 for CLEAD0001" in out
    assert "Weekly digest · week 47 (16\u2009–\u200922 Nov 2026)" in out and "New\n3 (+3)" in out
    payload = json.loads(out.split("## Block Kit JSON\n", 1)[1].split("\n## Open it", 1)[0])
    assert payload["blocks"][0]["type"] == "header"
    assert "https://app.slack.com/block-kit-builder/#%7B%22blocks%22" in out
    assert runs(bot.engine) == []


def test_cli_send_refuses_a_second_send_unless_forced(
    bot: Bot, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    bot.setup_team()
    fill_week(bot)
    assert feedbot(["digest", "send", "--week", "2026-W47"]) == 0
    assert "queued the leadership digest of 2026-W47 for CLEAD0001" in capsys.readouterr().out
    assert feedbot(["digest", "send", "--week", "2026-W47"]) == 2
    assert "already sent" in capsys.readouterr().err
    assert feedbot(["digest", "send", "--week", "2026-W47", "--force"]) == 0
    assert feedbot(["digest", "send", "--channel", "CNOPE0001"]) == 2
    assert "CNOPE0001 gets no digest" in capsys.readouterr().err
    assert feedbot(["digest", "preview", "--week", "soon"]) == 2
    with Session(bot.engine) as session:
        (run,) = session.exec(select(DigestRun)).all()
        posts = session.exec(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.purpose == "digest_leadership")
        ).one()
    assert run.forced and posts == 2
    bot.clock.now = datetime.now(UTC) + timedelta(minutes=1)  # the CLI queues at real time
    bot.drain()
    assert len(digests_in(bot)) == 2


def test_demo_needs_no_slack_and_leaves_the_real_database_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    real = tmp_path / "feedbot.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{real}")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    assert feedbot(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Weekly digest · week" in out and "Recurring themes" in out
    assert "You said, we did" in out
    assert png_size((tmp_path / "feedbot-demo-chart.png").read_bytes())[0] >= 1000
    assert str(tmp_path / "feedbot-demo-chart.png") in out
    assert not real.exists()
    from feedbot.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'feedbot-demo.db'}")
    with Session(engine) as session:
        texts = session.exec(select(Report.text)).all()
        categories = set(session.exec(select(Report.category)).all())
        places = set(session.exec(select(Report.location)).all())
        resolved = session.exec(
            select(func.count()).select_from(Report).where(col(Report.resolved_at).is_not(None))
        ).one()
        me_too = session.exec(select(func.sum(Report.me_too_count))).one()
    engine.dispose()
    assert len(texts) > 150 and resolved > 50 and (me_too or 0) > 50
    assert any("Kunden" in text for text in texts) and any("customers" in text for text in texts)
    assert len(categories) == 7 and len(places) >= 8
    assert feedbot(["demo", "--language", "de"]) == 0, "a rerun replaces its own database"
    assert "Wochenbericht · KW" in capsys.readouterr().out
    (tmp_path / "mine.db").write_bytes(b"SQLite format 3\x00" + bytes(100))
    assert feedbot(["demo", "--database", "mine.db"]) == 2
    assert "not a feedbot demo database" in capsys.readouterr().err
    get_settings.cache_clear()


def test_the_digest_kind_names_fit_the_run_table() -> None:
    assert all(len(kind) <= 32 for kind in DigestKind)
