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

from sqlmodel import Session, select

from feedbot import jobs
from feedbot.models import MeToo, Report, TimelineEntry
from feedbot.slack.deps import Deps
from tests.harness import ALICE, BOB, CAROL, INTAKE, LEADER, LEADERSHIP, SECRET_KEY, Bot
from tests.test_anonymity import where_named
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


def test_forget_user_leaves_them_in_no_column_of_any_table(bot: Bot, tmp_path: Path) -> None:
    """Alice has been everything: a leader (listed in the settings and the audit log), a
    named reporter by DM, an anonymous reporter, a me-too, the owner, acknowledger and
    resolver of colleagues' reports, a reminder's recipient, someone an incident was
    acknowledged by, someone mentioned in a report's text, and the author of a direct
    message still waiting for an answer. After `feedbot forget-user`, neither her Slack id
    nor her DM channel is in any column of any table, and the thread lines feedbot wrote
    about her say "a former colleague"."""
    bot.setup_team()
    bot.configure(leaders=f"{LEADER},{ALICE}", burst_threshold="3")
    dm = bot.slack.dm_channel(ALICE)
    bot.message(ALICE, "Kasse 3 in Halle startet neu", channel=dm, channel_type="im")
    named = bot.report()
    bot.command(ALICE, "")
    anonymously = {"type": "checkboxes", "selected_options": [{"value": "yes"}]}
    bot.submit(
        ALICE, bot.last_view(), form_values("Schichtplan ändert sich nachts", anonymous=anonymously)
    )
    bot.command(BOB, f"Drucker im Lager defekt, <@{ALICE}> weiß Bescheid")
    bobs = bot.report()
    bot.command(CAROL, "Etikettendrucker klemmt")
    carols = bot.report()
    bot.drain()
    bot.press(ALICE, "report_me_too", str(carols.id), channel=INTAKE)
    bot.press_card(ALICE, "triage_claim", bobs)
    bot.press_card(LEADER, "triage_assign", carols, selected_user=ALICE)
    bot.drain()
    bot.press_card(ALICE, "triage_resolve", bobs)
    bot.submit(ALICE, bot.last_view(), {"note": {"value": f"Fixed by <@{ALICE}> herself"}})
    for number in range(3):
        bot.command(CAROL, f"Netz weg in Leipzig Gohlis seit Mittag, Kunden sauer ({number})")
    bot.drain()
    group = bot.report().incident_id
    assert group is not None
    bot.press(ALICE, "incident_acknowledge", str(group))
    bot.message(ALICE, "Noch eine Frage zur Kasse", channel=dm, channel_type="im")  # kept
    from feedbot.slack.features import reminders as reminder_feature

    bot.clock.advance(days=3)
    reminder_feature.send_due(bot.deps)
    bot.drain()
    before = where_named(bot.engine, ALICE, dm)
    assert {"report.reporter_id", "report.owner_id", "incident_group.acknowledged_by"} <= set(
        before
    ), before
    assert any(f"<@{ALICE}>" in m["text"] for m in bot.slack.messages(LEADERSHIP))

    result = feedbot_cli(bot, tmp_path, "forget-user", ALICE)
    assert result.returncode == 0, result.stderr
    assert "2 reports are now anonymous" in result.stdout, result.stdout
    assert "settings changed: leaders" in result.stdout
    assert where_named(bot.engine, ALICE, dm) == [], "nowhere, not even the profile cache"
    assert bot.report(named.id).anonymous and bot.report(named.id).reporter_sealed is None
    assert bot.report(carols.id).me_too_count == 1, "her me too still counts"
    assert "a former colleague" in bot.report(bobs.id).text
    assert ALICE not in bot.bot_config().leaders

    bot.clock.now = datetime.now(UTC) + timedelta(seconds=1)  # the CLI queued it at real time
    bot.drain()
    shown = json.dumps(bot.slack.messages(LEADERSHIP), ensure_ascii=False)
    assert f"<@{ALICE}>" not in shown, "cards and thread lines edited in Slack"
    assert "a former colleague" in shown
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
