"""Leadership routes: a region's own leaders act on its reports only, and each route's
channel gets a digest about the reports routed to it, while the company digest sums up
every route in a line."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, select

from feedbot.core import config as runtime_config
from feedbot.core.digest import build_digest
from feedbot.db import session_scope
from feedbot.errors import InvalidValue
from feedbot.models import AuditEntry, IncidentGroup, OutboxMessage, Report, ReportStatus
from feedbot.slack.features import digest as digest_feature
from feedbot.slack.views.admin import lines_to_routes, routes_to_lines
from tests.harness import ADMIN, ALICE, BOB, CAROL, LEADER, LEADERSHIP, Bot
from tests.test_admin import open_group, state_of
from tests.test_digest import BERLIN, NOW, PERIOD, add, deps_for, utc
from tests.test_reminders import berlin, scan
from tests.test_triage import file_from_form

EAST = "CREGOST01"
EAST_LEAD = CAROL
EAST_ROUTE = [
    {"channel": EAST, "locations": ["Leipzig", "Dresden"], "leaders": [EAST_LEAD]},
]


def route_team(bot: Bot, route: list[dict[str, Any]] = EAST_ROUTE) -> None:
    bot.setup_team()
    bot.slack.add_channel(EAST, name="leadership-east")
    bot.configure(leadership_routes=json.dumps(route), locations="Leipzig,Dresden,Hamburg")


def file_at(bot: Bot, location: str, text: str = "Fritzbox batch 7 reboots hourly") -> Report:
    return file_from_form(
        bot,
        text=text,
        location={"type": "static_select", "selected_option": {"value": location}},
    )


def press(bot: Bot, user: str, action_id: str, report: Report) -> None:
    """Press a button of `report`'s card wherever it was posted (a route's channel too)."""
    with Session(bot.engine) as session:
        card = session.get(OutboxMessage, report.card_message_id)
        assert card is not None and card.result_ts and card.result_channel
        channel, ts = card.result_channel, card.result_ts
    assert bot.click(user, channel, ts, action_id).status == 200
    bot.drain()


# --------------------------------------------------------------------------- route leaders


def test_a_routes_own_leader_triages_its_reports_and_is_refused_elsewhere(bot: Bot) -> None:
    route_team(bot)
    leipzig = file_at(bot, "Leipzig")
    hamburg = file_at(bot, "Hamburg")
    assert (leipzig.leadership_channel, hamburg.leadership_channel) == (EAST, LEADERSHIP)

    press(bot, EAST_LEAD, "triage_acknowledge", leipzig)
    assert bot.report(leipzig.id).acknowledged_by == EAST_LEAD

    press(bot, EAST_LEAD, "triage_acknowledge", hamburg)
    assert bot.report(hamburg.id).status == ReportStatus.OPEN, "another route's report"
    refusal = [e["text"] for e in bot.slack.ephemerals if e["user"] == EAST_LEAD][-1]
    assert "Only leaders and admins" in refusal

    press(bot, LEADER, "triage_acknowledge", hamburg)
    assert bot.report(hamburg.id).acknowledged_by == LEADER, "global leaders act everywhere"


def test_a_routes_user_group_leads_it_and_the_settings_form_keeps_it(bot: Bot) -> None:
    bot.slack.add_usergroup("SEAST0001", [BOB])
    route_team(bot, [{"channel": EAST, "locations": ["Leipzig"], "leaders_usergroup": "SEAST0001"}])
    report = file_at(bot, "Leipzig")
    press(bot, BOB, "triage_claim", report)
    assert bot.report(report.id).owner_id == BOB

    lines = routes_to_lines(bot.bot_config().leadership_routes)
    assert lines == f"{EAST} |  | Leipzig | SEAST0001"
    form = f"{EAST} | | Leipzig, Dresden | {CAROL}, SEAST0001 | de"
    parsed = runtime_config.parse_value("leadership_routes", lines_to_routes(form))
    assert parsed == [
        {
            "channel": EAST,
            "categories": [],
            "locations": ["Leipzig", "Dresden"],
            "language": "de",
            "leaders": [CAROL],
            "leaders_usergroup": "SEAST0001",
        }
    ]
    assert routes_to_lines(parsed) == f"{EAST} |  | Leipzig, Dresden | {CAROL}, SEAST0001 | de"


def test_route_leaders_are_checked_like_any_setting_and_audited(bot: Bot) -> None:
    bot.setup_team()
    bad = json.dumps([{"channel": EAST, "leaders": ["carol"]}])
    with pytest.raises(InvalidValue, match="not user IDs: carol"):
        runtime_config.parse_value("leadership_routes", bad)
    with session_scope(bot.engine) as session:
        runtime_config.set_value(
            session, key="leadership_routes", raw=json.dumps(EAST_ROUTE), actor=ADMIN, now=NOW
        )
    with Session(bot.engine) as session:
        audit = session.exec(
            select(AuditEntry).where(col(AuditEntry.key) == "leadership_routes")
        ).one()
    assert audit.actor == ADMIN and EAST_LEAD in audit.new_value


def test_a_routes_leaders_are_reminded_and_escalated_to_for_its_reports(bot: Bot) -> None:
    route_team(bot)
    bot.configure(reminder_interval="3d")
    critical = {"type": "static_select", "selected_option": {"value": "critical"}}
    leipzig = file_from_form(
        bot,
        text="Whole Leipzig shop offline",
        location={"type": "static_select", "selected_option": {"value": "Leipzig"}},
        urgency=critical,
    )
    assert scan(bot, berlin(18, 11))[0][0] == leipzig.reference
    reminder = next(
        m for m in bot.slack.messages(EAST) if "waiting for acknowledgement" in m["text"]
    )
    mentioned = set(bot.slack.mentions(reminder))
    assert f"<@{EAST_LEAD}>" in mentioned and f"<@{LEADER}>" not in mentioned
    assert any("is *critical*" in dm for dm in bot.dms(EAST_LEAD)), "escalated to the route"
    assert any("is *critical*" in dm for dm in bot.dms(ADMIN)), "and, as always, to the admins"
    assert not any("is *critical*" in dm for dm in bot.dms(ALICE))


def test_a_bare_channel_line_is_a_catch_all_route() -> None:
    assert json.loads(lines_to_routes(f"{EAST}\n")) == [
        {"channel": EAST, "categories": [], "locations": []}
    ]


def test_an_outage_groups_within_its_route_and_the_routes_leader_acknowledges_it(
    bot: Bot,
) -> None:
    """The same outage text in a routed city and an unrouted one makes two groups, one per
    leadership channel: a group never holds reports its route's leaders may not act on."""
    route_team(bot)
    bot.configure(burst_threshold="3")
    for _ in range(3):
        file_at(bot, "Leipzig", "No network in the shop since nine, customers cannot call")
        file_at(bot, "Hamburg", "No network in the shop since nine, customers cannot call")
    with Session(bot.engine) as session:
        groups = session.exec(select(IncidentGroup).order_by(col(IncidentGroup.id))).all()
        members = {
            group.leadership_channel: {
                r.leadership_channel
                for r in session.exec(select(Report).where(Report.incident_id == group.id))
            }
            for group in groups
        }
    assert members == {EAST: {EAST}, LEADERSHIP: {LEADERSHIP}}
    east = next(group for group in groups if group.leadership_channel == EAST)
    with Session(bot.engine) as session:
        card = session.get(OutboxMessage, east.card_message_id)
        assert card is not None and card.result_channel == EAST and card.result_ts
    assert bot.click(EAST_LEAD, EAST, card.result_ts, "incident_acknowledge").status == 200
    bot.drain()
    with Session(bot.engine) as session:
        assert session.get(IncidentGroup, east.id).status == ReportStatus.ACKNOWLEDGED  # type: ignore[union-attr]


# --------------------------------------------------------------------------- digests per route


def week_with_routes(bot: Bot) -> dict[str, Report]:
    """Five reports of week 47: three routed east, two to the main channel, with known
    acknowledgement times and one overdue follow-up in the east."""
    with session_scope(bot.engine) as session:
        made = {
            "east_1": add(
                session,
                "Router reboots in Leipzig",
                category="Network & coverage",
                location="Leipzig",
                created=utc(11, 16, 9),
                acknowledged=timedelta(hours=2),
            ),
            "east_2": add(
                session,
                "Router reboots in Dresden",
                category="Network & coverage",
                location="Dresden",
                created=utc(11, 17, 9),
                acknowledged=timedelta(hours=6),
                follow_up=utc(11, 20, 9),
            ),
            "east_3": add(
                session,
                "Till printer jams",
                category="Devices & hardware",
                location="Leipzig",
                created=utc(11, 18, 9),
                resolved=timedelta(hours=30),
            ),
            "main_1": add(
                session,
                "Roaming billed twice",
                category="Billing & tariffs",
                location="Hamburg",
                created=utc(11, 18, 10),
                acknowledged=timedelta(hours=1),
            ),
            "main_2": add(
                session,
                "Tariff unclear",
                category="Billing & tariffs",
                location=None,
                created=utc(11, 19, 8),
            ),
        }
        for name, report in made.items():
            report.leadership_channel = EAST if name.startswith("east") else LEADERSHIP
        session.flush()
        for report in made.values():
            session.expunge(report)
    return made


def test_a_routes_digest_counts_only_its_reports_and_the_company_digest_has_a_line_per_route(
    bot: Bot,
) -> None:
    route_team(bot)
    week_with_routes(bot)
    with Session(bot.engine) as session:
        east = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW, channel=EAST)
        company = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW, routes=[EAST])
    assert (east.new.count, east.resolved.count, east.still_open.count) == (3, 1, 2)
    assert [(c.name, c.count) for c in east.categories] == [
        ("Network & coverage", 2),
        ("Devices & hardware", 1),
    ]
    assert east.overdue.total == 1 and east.unacknowledged.total == 0
    assert east.acknowledge.count == 2 and east.acknowledge.median == timedelta(hours=4)
    assert east.resolve.count == 1 and east.resolve.median == timedelta(hours=30)
    assert (
        sum(east.trend.series["Network & coverage"]) == 2
        and "Billing & tariffs" not in east.trend.series
    )
    assert east.routes == []

    assert (company.new.count, company.resolved.count, company.still_open.count) == (5, 1, 4)
    (line,) = company.routes
    assert (line.channel, line.new, line.open, line.overdue) == (EAST, 3, 2, 1)
    assert line.acknowledge_median == timedelta(hours=4), "median of 2 h and 6 h"


def test_a_routes_line_counts_an_incident_group_once(bot: Bot) -> None:
    """Two open east reports in one group are one open case, acknowledged after 3 hours."""
    route_team(bot)
    made = week_with_routes(bot)
    with session_scope(bot.engine) as session:
        group = IncidentGroup(
            created_at=utc(11, 16, 9),
            category="Network & coverage",
            example="Router reboots",
            leadership_channel=EAST,
            status=ReportStatus.ACKNOWLEDGED,
            acknowledged_at=utc(11, 16, 12),
        )
        session.add(group)
        session.flush()
        for name in ("east_1", "east_2"):
            report = session.get(Report, made[name].id)
            assert report is not None
            report.incident_id = group.id
    with Session(bot.engine) as session:
        company = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW, routes=[EAST])
        east = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW, channel=EAST)
    (line,) = company.routes
    assert (line.new, line.open, line.overdue) == (3, 1, 0), "reports new, the group open once"
    assert line.acknowledge_median == timedelta(hours=3)
    assert east.still_open.count == line.open


def test_each_leadership_channel_gets_its_own_digest_chart_and_csv(bot: Bot) -> None:
    route_team(bot)
    made = week_with_routes(bot)
    bot.clock.now = utc(11, 23, 7)
    runs = digest_feature.send_due(deps_for(bot))
    assert sorted(run.channel for run in runs) == sorted([LEADERSHIP, EAST])
    bot.drain()
    east_digest = next(m for m in bot.slack.messages(EAST) if m["text"].startswith("Weekly"))
    main_digest = next(m for m in bot.slack.messages(LEADERSHIP) if m["text"].startswith("Weekly"))
    assert east_digest["text"] == "Weekly digest, week 47: 3 new, 1 resolved, 2 still open."
    assert main_digest["text"] == "Weekly digest, week 47: 5 new, 1 resolved, 4 still open."
    main_blocks = json.dumps(main_digest["blocks"], ensure_ascii=False)
    assert f"<#{EAST}>: *3* new · 2 open · 1 overdue · median to acknowledge 4 hours" in main_blocks
    assert f"Reports routed to <#{EAST}> only" in json.dumps(east_digest["blocks"])
    tables = {
        f["channel_id"]: f["content"] for f in bot.slack.files if f["filename"].endswith(".csv")
    }
    east_rows = list(csv.reader(io.StringIO(tables[EAST].decode("utf-8-sig"))))[1:]
    assert sorted(row[0] for row in east_rows) == sorted(
        made[name].reference for name in ("east_1", "east_2", "east_3")
    )
    main_rows = list(csv.reader(io.StringIO(tables[LEADERSHIP].decode("utf-8-sig"))))[1:]
    assert len(main_rows) == 5


def test_a_route_cannot_lead_to_the_leadership_channel_itself(bot: Bot) -> None:
    """Its leaders would lead every report there, not only the route's: refused from the
    command line and in the settings form, in the form before anything is stored."""
    bot.setup_team()
    route = json.dumps([{"channel": LEADERSHIP, "categories": ["Billing & tariffs"]}])
    with pytest.raises(InvalidValue, match="cannot lead to the leadership channel"):
        bot.configure(leadership_routes=route)
    bot.configure(leadership_routes=json.dumps([{"channel": EAST, "leaders": [CAROL]}]))
    with pytest.raises(InvalidValue, match="cannot lead to the leadership channel"):
        bot.configure(leadership_channel=EAST)

    view = open_group(bot, ADMIN, "channels")
    state = state_of(
        view, leadership_routes={"type": "plain_text_input", "value": f"{LEADERSHIP}|Billing"}
    )
    errors = json.loads(bot.submit(ADMIN, view, state).body)["errors"]
    assert "cannot lead to the leadership channel" in errors["leadership_routes"]
    # Both at once, as one change: the channel moves, and a route takes the old one.
    state = state_of(
        view,
        leadership_channel={"type": "conversations_select", "selected_conversation": EAST},
        leadership_routes={"type": "plain_text_input", "value": f"{LEADERSHIP}|Billing"},
    )
    assert json.loads(bot.submit(ADMIN, view, state).body) == {"response_action": "clear"}
    config = bot.bot_config()
    assert config.leadership_channel == EAST
    assert [route["channel"] for route in config.leadership_routes] == [LEADERSHIP]
