"""Retention, export and forget-user: privacy on the server."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session, col, select

from feedbot import jobs
from feedbot.models import MeToo, Report, TimelineEntry
from feedbot.slack.app import Deps
from tests.harness import ALICE, BOB, CAROL, IDENTITIES, INTAKE, LEADER, SECRET_KEY, Bot
from tests.test_reporting import form_values


def feedbot_cli(bot: Bot, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FEEDBOT_"))}
    env["DATABASE_URL"] = bot.engine.url.render_as_string(hide_password=False)
    env["FEEDBOT_SECRET_KEY"] = SECRET_KEY
    return subprocess.run(
        [sys.executable, "-m", "feedbot", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolve(bot: Bot, report: Report, note: str = "Fixed") -> None:
    bot.drain()
    bot.press_card(LEADER, "triage_resolve", report)
    bot.submit(LEADER, bot.last_view(), {"note": {"type": "plain_text_input", "value": note}})


def test_resolved_reports_past_retention_are_purged_with_their_timeline(bot: Bot) -> None:
    bot.setup_team()
    bot.configure(retention_days="30")
    bot.command(ALICE, "Old resolved problem")
    old = bot.report()
    bot.press(BOB, "report_me_too", str(old.id), channel=INTAKE)
    resolve(bot, old)
    bot.command(ALICE, "Old but still open")
    still_open = bot.report()
    bot.clock.advance(days=20)
    bot.command(ALICE, "Recently resolved")
    recent = bot.report()
    resolve(bot, recent)
    bot.clock.advance(days=11)
    deps = Deps(
        settings=bot.settings,
        engine=bot.engine,
        client=bot.app.client,
        clock=bot.clock,
        config_ttl=0,
    )
    jobs.purge_expired(deps)
    remaining = {r.id for r in bot.reports()}
    assert remaining == {still_open.id, recent.id}
    with Session(bot.engine) as session:
        assert (
            session.exec(select(TimelineEntry).where(TimelineEntry.report_id == old.id)).all() == []
        )
        assert session.exec(select(MeToo).where(MeToo.report_id == old.id)).all() == []


def test_export_masks_contacts_and_never_names_anonymous_reporters(
    bot: Bot, tmp_path: Path
) -> None:
    bot.setup_team()
    bot.command(ALICE, "")
    anonymous = {"type": "checkboxes", "selected_options": [{"value": "yes"}]}
    contact = {"type": "plain_text_input", "value": "Frau Schulz 0341 555 1234"}
    bot.submit(
        ALICE,
        bot.last_view(),
        form_values("Anonymous with a call back", anonymous=anonymous, contact=contact),
    )
    bot.command(BOB, "Bob says so, named")
    result = feedbot_cli(bot, tmp_path, "export", "--since", "2026-01-01", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["reference"] for r in rows] == ["FB-1001", "FB-1002"]
    assert rows[0]["reporter"] == "" and ALICE not in result.stdout
    assert rows[0]["customer_contact"] == "•••34" and "555" not in result.stdout
    assert rows[1]["reporter"] == BOB
    as_json = feedbot_cli(
        bot, tmp_path, "export", "--since", "2026-01-01", "--format", "json", "--output", "out.json"
    )
    assert as_json.returncode == 0 and "exported 2 reports" in as_json.stderr
    assert json.loads((tmp_path / "out.json").read_text())[1]["reporter"] == BOB
    bad = feedbot_cli(bot, tmp_path, "export", "--since", "yesterday")
    assert bad.returncode == 2 and "is not a date like" in bad.stderr


def test_an_exported_csv_opened_in_a_spreadsheet_runs_nothing(bot: Bot, tmp_path: Path) -> None:
    bot.setup_team()
    formulas = [
        '=HYPERLINK("https://evil.example","click")',
        "+49 341 5551234 called twice",
        "-1 bars of signal in the basement",
        "@SUM(A1:A9) sagt der Kunde",
    ]
    for text in formulas:
        bot.command(ALICE, text)
    result = feedbot_cli(bot, tmp_path, "export", "--since", "2026-01-01", "--format", "csv")
    assert result.returncode == 0, result.stderr
    texts = [row["text"] for row in csv.DictReader(io.StringIO(result.stdout))]
    assert texts == ["'" + text for text in formulas]
    as_json = feedbot_cli(bot, tmp_path, "export", "--since", "2026-01-01", "--format", "json")
    assert [row["text"] for row in json.loads(as_json.stdout)] == formulas, "JSON stays exact"


def test_forget_user_makes_their_reports_anonymous_and_says_what_changed(
    bot: Bot, tmp_path: Path
) -> None:
    bot.setup_team()
    bot.command(ALICE, "Alice's report")
    alices = bot.report()
    bot.command(CAROL, "Carol's report")
    carols = bot.report()
    bot.press(ALICE, "report_me_too", str(carols.id), channel=INTAKE)
    bot.drain()
    assert ALICE in json.dumps(bot.card(alices)["blocks"])
    result = feedbot_cli(bot, tmp_path, "forget-user", ALICE)
    assert result.returncode == 0, result.stderr
    assert "1 reports are now anonymous" in result.stdout and "1 me-toos kept" in result.stdout
    report = bot.report(alices.id)
    assert report.reporter_id is None and report.anonymous
    assert bot.report(carols.id).me_too_count == 1
    with Session(bot.engine) as session:
        actors = session.exec(
            select(TimelineEntry.actor_id).where(col(TimelineEntry.actor_id) == ALICE)
        ).all()
        assert actors == []
        sealed = session.exec(select(MeToo.user_sealed)).all()
        assert [IDENTITIES.open(seal) for seal in sealed] == [None], "no me-too opens to her"
    bot.clock.now = datetime.now(UTC) + timedelta(seconds=1)  # the CLI queued it at real time
    bot.drain()
    assert ALICE not in json.dumps(bot.card(alices)["blocks"]), "the card was refreshed"
    assert feedbot_cli(bot, tmp_path, "forget-user", "alice").returncode == 2


def test_audit_cli_lists_the_latest_changes(bot: Bot, tmp_path: Path) -> None:
    bot.setup_team()
    bot.clock.advance(minutes=1)
    result = feedbot_cli(bot, tmp_path, "config", "set", "allow_anonymous", "false")
    assert result.returncode == 0, result.stderr
    audit = feedbot_cli(bot, tmp_path, "audit", "--limit", "2")
    assert audit.returncode == 0
    lines = audit.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "allow_anonymous: true → false" in lines[0] and "cli" in lines[0]
