"""What a weekly digest says (issue 4): every number against a hand-computed week, themes,
the empty week, daylight saving, Block Kit limits at 10,000 reports, the CSV and the chart.

The fixture week is ISO week 2026-W47 in Europe/Berlin (CET, UTC+1): Monday 16 November
00:00 local = Sunday 15 November 23:00 UTC, to Monday 23 November 00:00 local = Sunday 22
November 23:00 UTC. The digest is built on Monday 23 November 08:00 local (07:00 UTC).
"""

from __future__ import annotations

import csv
import io
import json
import random
import struct
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from slack_sdk import WebClient
from sqlalchemy import Engine, event, insert
from sqlmodel import Session

from feedbot.core import reports, similarity
from feedbot.core.config import RuntimeConfig
from feedbot.core.config_values import WEEKDAYS
from feedbot.core.digest import (
    Count,
    Schedule,
    build_digest,
    build_you_said_we_did,
    digest_channels,
    parse_period,
    percentile,
    shift,
    week_bounds,
    week_csv,
)
from feedbot.core.reports import ReportDraft
from feedbot.errors import InvalidValue
from feedbot.models import (
    Attachment,
    AttachmentState,
    OutboxMessage,
    Report,
    ReportSource,
    ReportStatus,
    ReportTerm,
    Urgency,
)
from feedbot.slack.deps import Deps
from feedbot.slack.features.digest import send_due
from feedbot.slack.views import MAX_MESSAGE_BLOCKS
from feedbot.slack.views import digest as views
from feedbot.slack.views.chart import render_chart
from feedbot.slack.views.digest import (
    build_digest_message,
    builder_url,
    duration,
    plain_text,
)
from tests.harness import ALICE, BOB, CAROL, IDENTITIES, LEADERSHIP, TOKEN, Bot

BERLIN = ZoneInfo("Europe/Berlin")
PERIOD = "2026-W47"
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
CONFIG = RuntimeConfig()


def deps_for(bot: Bot) -> Deps:
    """What the scheduler's jobs get, after a (re)start of the process."""
    return Deps(
        settings=bot.settings,
        engine=bot.engine,
        client=WebClient(token=TOKEN, base_url=bot.slack.base_url),
        clock=bot.clock,
        config_ttl=0,
    )


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def add(
    session: Session,
    text: str,
    *,
    category: str,
    location: str | None,
    created: datetime,
    urgency: Urgency = Urgency.NORMAL,
    acknowledged: timedelta | None = None,
    resolved: timedelta | None = None,
    duplicate: bool = False,
    me_too: int = 0,
    follow_up: datetime | None = None,
    anonymous: bool = False,
    reporter: str = ALICE,
    note: str | None = None,
    shared: bool = True,
) -> Report:
    """A report as the bot stores it (search terms included), then set to a known state;
    `acknowledged`/`resolved` are times after filing."""
    report = reports.create_report(
        session,
        reporter_id=reporter,
        draft=ReportDraft(
            text=text,
            source=ReportSource.MODAL,
            category=category,
            location=location,
            urgency=urgency,
            anonymous=anonymous,
        ),
        config=CONFIG,
        now=created,
        identities=IDENTITIES,
    )
    if acknowledged is not None:
        report.acknowledged_at = created + acknowledged
        report.status = ReportStatus.ACKNOWLEDGED
    if resolved is not None:
        report.resolved_at = created + resolved
        report.status = ReportStatus.RESOLVED
        report.resolution_note = note or "Fixed."
        report.solution_shared = shared
    if duplicate:
        report.status = ReportStatus.DUPLICATE
        report.resolved_at = created + timedelta(hours=1)
    report.me_too_count = me_too
    report.follow_up_at = follow_up
    session.add(report)
    session.flush()
    return report


@pytest.fixture
def week(engine: Engine) -> Iterator[dict[str, int]]:
    """The hand-computed week; yields report ids by name."""
    with Session(engine) as session:
        made = {
            # the week before (W46)
            "p1": add(
                session,
                "Netz weg am Hauptbahnhof",
                category="Network & coverage",
                location="Leipzig",
                created=utc(11, 10, 9),
                acknowledged=timedelta(hours=1),
                resolved=timedelta(days=1),
            ),
            "p2": add(
                session,
                "LTE bricht ab",
                category="Network & coverage",
                location="Leipzig",
                created=utc(11, 11, 12),
            ),
            "p3": add(
                session,
                "Rechnung falsch",
                category="Billing & tariffs",
                location="Dresden",
                created=utc(11, 12, 8),
                acknowledged=timedelta(hours=1),
                resolved=timedelta(days=5),
            ),
            "p4": add(
                session,
                "Rechnung doppelt",
                category="Billing & tariffs",
                location=None,
                created=utc(11, 13, 8),
                duplicate=True,
            ),
            # the digest's week (W47)
            "r1": add(
                session,
                "Fritzbox 7590 startet ständig neu, Kunden bringen sie zurück",
                category="Devices & hardware",
                location="Leipzig",
                created=utc(11, 16, 8),
                acknowledged=timedelta(hours=1),
                resolved=timedelta(hours=24),
                me_too=2,
                follow_up=utc(11, 20, 8),
            ),
            "r2": add(
                session,
                "Die Fritzbox 7590 startet dauernd neu, Kunden wollen tauschen",
                category="Devices & hardware",
                location="Dresden",
                created=utc(11, 17, 10),
                acknowledged=timedelta(hours=3),
                urgency=Urgency.HIGH,
                me_too=1,
            ),
            "r3": add(
                session,
                "Fritzbox 7590 startet immer wieder neu seit dem Update",
                category="Devices & hardware",
                location="Berlin",
                created=utc(11, 18, 9),
                urgency=Urgency.CRITICAL,
            ),
            "r4": add(
                session,
                "Roaming-Option doppelt berechnet, Kunden verärgert",
                category="Billing & tariffs",
                location="Leipzig",
                created=utc(11, 18, 11),
                acknowledged=timedelta(hours=2),
                resolved=timedelta(hours=24),
                me_too=3,
                anonymous=True,
            ),
            # Sunday 23:30 in Berlin: still this week
            "r5": add(
                session,
                "Drucker im Shop druckt keine Verträge, Kunden warten",
                category="Shop & tools",
                location="Leipzig",
                created=utc(11, 22, 22, 30),
                follow_up=utc(11, 22, 12),
            ),
            # Monday 00:30 in Berlin: next week
            "r6": add(
                session,
                "Kasse hängt beim Tagesabschluss",
                category="Shop & tools",
                location=None,
                created=utc(11, 22, 23, 30),
            ),
            "r7": add(
                session,
                "Netz weg in Dresden",
                category="Network & coverage",
                location="Dresden",
                created=utc(11, 19, 12),
                duplicate=True,
            ),
            "r8": add(
                session,
                "Kein Netz in der Tiefgarage, Kunden können nicht telefonieren",
                category="Network & coverage",
                location="Leipzig",
                created=utc(11, 20, 15),
                acknowledged=timedelta(hours=10),
            ),
        }
        session.commit()
        yield {name: report.id or 0 for name, report in made.items()}


def test_every_number_of_the_digest_matches_the_hand_computed_week(
    engine: Engine, week: dict[str, int]
) -> None:
    with Session(engine) as session:
        digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    assert (digest.start, digest.end) == (utc(11, 15, 23), utc(11, 22, 23))
    # new: r1 r2 r3 r4 r5 r8 (r6 is next week, r7 a duplicate); before: p1 p2 p3
    assert (digest.new.count, digest.new.previous) == (6, 3)
    # resolved in the week: r1, r4 and p3 (filed the week before); before: p1
    assert (digest.resolved.count, digest.resolved.previous) == (3, 1)
    # open when the week ended: p2 r2 r3 r5 r8; a week earlier: p2 p3
    assert (digest.still_open.count, digest.still_open.previous) == (5, 2)
    assert digest.categories == [
        Count("Devices & hardware", 3, 0),
        Count("Network & coverage", 1, 2),
        Count("Billing & tariffs", 1, 1),
        Count("Shop & tools", 1, 0),
    ]
    assert digest.locations == [
        Count("Leipzig", 4, 2),
        Count("Dresden", 1, 1),
        Count("Berlin", 1, 0),
    ]
    assert [r.id for r in digest.urgent.items] == [week["r3"], week["r2"]]
    assert [r.id for r in digest.unacknowledged.items] == [
        week["p2"],
        week["r3"],
        week["r5"],
        week["r6"],
    ]
    assert [r.id for r in digest.overdue.items] == [week["r5"]]
    assert (digest.urgent.total, digest.unacknowledged.total, digest.overdue.total) == (2, 4, 1)
    # acknowledged in the week after 1 h (r1), 2 h (r4), 3 h (r2), 10 h (r8):
    # median (2 + 3) / 2 = 2.5 h; p90 at rank 2.7 = 3 h + 0.7 x 7 h = 7.9 h
    assert digest.acknowledge.count == 4
    assert digest.acknowledge.median == timedelta(hours=2, minutes=30)
    assert digest.acknowledge.p90 == timedelta(hours=7, minutes=54)
    # resolved after 24 h (r1), 24 h (r4), 120 h (p3): median 24 h; p90 = 24 + 0.8 x 96 h
    assert digest.resolve.count == 3
    assert digest.resolve.median == timedelta(hours=24)
    assert digest.resolve.p90 == timedelta(hours=100, minutes=48)
    assert digest.trend.periods[0] == "2026-W40" and digest.trend.periods[-1] == PERIOD
    assert digest.trend.series == {
        "Devices & hardware": [0, 0, 0, 0, 0, 0, 0, 3],
        "Network & coverage": [0, 0, 0, 0, 0, 0, 2, 1],
        "Billing & tariffs": [0, 0, 0, 0, 0, 0, 1, 1],
        "Shop & tools": [0, 0, 0, 0, 0, 0, 0, 1],
    }
    # themes: the three Fritzbox reports; "Kunden" alone (five reports) makes none
    assert digest.themes_total == 1
    (theme,) = digest.themes
    assert theme.reports == 3 and theme.me_too == 3
    assert theme.locations == ["Berlin", "Dresden", "Leipzig"]
    assert theme.example.id == week["r1"], "the most common wording, most me-too"


def test_the_message_shows_the_numbers_links_and_stays_in_limits(
    engine: Engine, week: dict[str, int]
) -> None:
    with Session(engine) as session:
        digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    message = build_digest_message(digest, locale="en", link_base="https://acme.slack.com/")
    payload = message.to_payload()
    text = plain_text(message)
    assert "Weekly digest · week 47 (16\u2009–\u200922 Nov 2026)" in text
    assert "New\n6 (+3)" in text and "Resolved\n3 (+2)" in text and "Still open\n5 (+3)" in text
    assert "• Devices & hardware: 3 (+3)" in text and "• Network & coverage: 1 (−1)" in text
    assert "3 × reported · 3 × me too · Berlin, Dresden, Leipzig" in text
    assert (
        "Acknowledged: median 2 hours 30 minutes, 90 % within 7 hours 54 minutes (4 reports)"
        in text
    )
    assert "Resolved: median 1 day, 90 % within 4 days 4 hours (3 reports)" in text
    assert payload["text"] == "Weekly digest, week 47: 6 new, 3 resolved, 5 still open."
    assert len(payload["blocks"]) <= MAX_MESSAGE_BLOCKS
    german = plain_text(build_digest_message(digest, locale="de"))
    assert "Wochenbericht · KW 47 (16.–22. Nov. 2026)" in german and "Noch offen\n5 (+3)" in german


def test_ungrouped_reports_are_counted_through_each_querys_own_index(
    engine: Engine, week: dict[str, int]
) -> None:
    """Nearly every report is in no incident group. SQLite, without statistics (feedbot never
    runs ANALYZE), took `incident_id IS NULL` for a selective condition and read every
    ungrouped report through the incident index, 0.3 s a count at 1,000,000 reports
    (`benchmarks/digest.py`); the counts now use their status, time or urgency index, and
    every count finds `incident_id` in it (migrations 0017 and 0018)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL chooses by its statistics")
    statements: list[tuple[str, Any]] = []
    listen = lambda *args: statements.append((args[2], args[3]))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    try:
        with Session(engine) as session:
            build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    ungrouped = [(sql, params) for sql, params in statements if "incident_id) IS NULL" in sql]
    assert len(ungrouped) >= 5
    open_at = [sql for sql, _ in ungrouped if "count(*)" in sql and "created_at <" in sql]
    assert open_at
    with engine.connect() as connection:
        for sql, params in ungrouped:
            plan = str(connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all())
            assert "ix_report_incident_id" not in plan, (sql, plan)
            assert "USING" in plan, (sql, plan)  # an index of its own, not the table
            # Every count from the index alone (migrations 0017 and 0018).
            assert "count(*)" not in sql or "COVERING INDEX" in plan, (sql, plan)


def test_reports_link_to_their_cards(engine: Engine, week: dict[str, int]) -> None:
    from feedbot.core import outbox

    with Session(engine) as session:
        queued = outbox.enqueue(
            session, conversation="CLEAD0001", method="chat.postMessage", payload={}, now=NOW
        )
        card = session.get(OutboxMessage, queued.id)
        assert card is not None
        card.result_channel, card.result_ts = "CLEAD0001", "1763456789.000200"
        report = session.get(Report, week["r3"])
        assert report is not None
        report.card_message_id = card.id
        session.add_all([card, report])
        session.commit()
        digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    blocks = json.dumps(
        build_digest_message(digest, locale="en", link_base="https://acme.slack.com/").to_payload()
    )
    assert "<https://acme.slack.com/archives/CLEAD0001/p1763456789000200|FB-" in blocks
    unlinked = build_digest_message(digest, locale="en", link_base=None)
    assert "archives" not in json.dumps(unlinked.to_payload())


def test_reports_link_to_the_post_they_came_from_unless_anonymous(
    engine: Engine, week: dict[str, int]
) -> None:
    post = "https://acme.slack.com/archives/CINTAKE01/p1763456789000300"
    with Session(engine) as session:
        named, anonymous = (session.get(Report, week[name]) for name in ("r3", "r5"))
        assert named is not None and anonymous is not None
        named.source_permalink = post
        anonymous.source_permalink = post.replace("0300", "0400")
        anonymous.anonymous = True
        session.add_all([named, anonymous])
        session.commit()
        digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    lines = {line.id: line for line in digest.unacknowledged.items}
    assert lines[week["r3"]].source_link == post
    assert lines[week["r5"]].source_link is None
    shown = json.dumps(build_digest_message(digest, locale="en", link_base=None).to_payload())
    assert f"<{post}|Original message>" in shown
    assert "p1763456789000400" not in shown


def test_themes_group_near_duplicates_across_categories_and_nothing_else(
    engine: Engine,
) -> None:
    printer = [
        ("Drucker im Shop druckt keine Verträge mehr", "Shop & tools", "Leipzig"),
        ("Der Drucker druckt keine Verträge, Kunden warten", "IT systems", "Halle"),
        ("Drucker druckt seit heute keine Verträge", "Shop & tools", "Leipzig"),
        ("Verträge: Drucker im Shop druckt nicht", "Other", "Dresden"),
    ]
    roaming = [
        ("Roaming option charged twice on the bill", "Billing & tariffs", "Berlin"),
        ("Customers see the roaming option charged twice", "Customer experience", "Köln"),
    ]
    unrelated = [
        ("Kunden warten lange an der Kasse", "Shop & tools", "Leipzig"),
        ("Kunden beschweren sich über die Hotline", "Customer experience", None),
        ("Parkplatz gesperrt", "Other", "Leipzig"),
    ]
    with Session(engine) as session:
        ids = [
            add(session, text, category=category, location=place, created=utc(11, 17, 9 + i)).id
            for i, (text, category, place) in enumerate(printer + roaming + unrelated)
        ]
        session.commit()
        digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    assert digest.themes_total == 2
    first, second = digest.themes
    assert (first.reports, second.reports) == (4, 2)
    assert first.locations == ["Leipzig", "Dresden", "Halle"]
    assert first.example.id in ids[:4] and second.example.id in ids[4:6]


def test_a_themes_photo_is_one_of_its_own_reports_shown_with_a_photo(engine: Engine) -> None:
    """The example if its card shows a photo, else the first member whose card does; never a
    report outside the theme, one of another week, or one whose photo was not copied."""

    def photo(session: Session, report: Report, *, copied: bool = True) -> None:
        session.add(
            Attachment(
                report_id=report.id or 0,
                file_id=f"F{report.id}",
                name="photo.jpg",
                mimetype="image/jpeg",
                size=100,
                state=AttachmentState.COPIED if copied else AttachmentState.UNFETCHABLE,
                copy_file_id=f"FCOPY{report.id}" if copied else None,
            )
        )

    def theme_photos() -> list[int | None]:
        with Session(engine) as session:
            digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
        return [theme.photo.id if theme.photo else None for theme in digest.themes]

    with Session(engine) as session:
        printer = [
            add(session, text, category="Shop & tools", location=None, created=utc(11, 17, 9 + i))
            for i, text in enumerate(
                [
                    "Drucker im Shop druckt keine Verträge mehr",
                    "Drucker druckt keine Verträge mehr",
                    "Drucker im Shop druckt keine Verträge",
                ]
            )
        ]
        roaming = [
            add(session, text, category="Billing & tariffs", location=None, created=utc(11, 18, 9))
            for text in ["Roaming option charged twice", "Roaming option charged twice again"]
        ]
        earlier = add(
            session,
            "Drucker im Shop druckt keine Verträge mehr",
            category="Shop & tools",
            location=None,
            created=utc(11, 10, 9),
        )
        photo(session, earlier)
        photo(session, roaming[0], copied=False)
        session.commit()
        assert theme_photos() == [None, None]
        with Session(engine) as reading:
            example = build_digest(reading, period=PERIOD, zone=BERLIN, now=NOW).themes[0].example
        others = [report for report in printer if report.id != example.id]
        for other in others:
            photo(session, other)
        session.commit()
        assert theme_photos() == [min(other.id or 0 for other in others), None]
        photo(session, session.get_one(Report, example.id))
        session.commit()
        assert theme_photos() == [example.id, None]


def test_a_week_without_reports_gets_a_short_digest_that_says_so(engine: Engine) -> None:
    with Session(engine) as session:
        add(
            session,
            "LTE bricht ab",
            category="Network & coverage",
            location="Leipzig",
            created=utc(11, 11, 12),
            urgency=Urgency.CRITICAL,
        )
        session.commit()
        digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    assert digest.empty and digest.themes == []
    assert digest.categories == [Count("Network & coverage", 0, 1)]
    assert (digest.new.count, digest.still_open.count, digest.still_open.previous) == (0, 1, 1)
    message = build_digest_message(digest, locale="en")
    text = plain_text(message)
    assert "No new reports in week 47." in text and "quiet week" in text
    assert "Critical and high urgency, still open (1)" in text, "what needs leaders stays"
    assert "Recurring themes" not in text and "By category" not in text
    assert len(message.blocks) <= 8


def test_weeks_follow_the_local_calendar_across_daylight_saving(engine: Engine) -> None:
    # 25 October 2026: clocks go back in Berlin, so week 43 has 169 hours; 29 March: 167.
    start, end = week_bounds("2026-W43", BERLIN)
    assert (start, end) == (utc(10, 18, 22), utc(10, 25, 23))
    assert end - start == timedelta(hours=169)
    start, end = week_bounds("2026-W13", BERLIN)
    assert (start, end) == (utc(3, 22, 23), utc(3, 29, 22))
    assert end - start == timedelta(hours=167)
    with Session(engine) as session:
        # Sunday 23:30 CET (after the change) is week 43; Monday 00:30 is week 44
        add(session, "late Sunday", category="Other", location=None, created=utc(10, 25, 22, 30))
        add(session, "early Monday", category="Other", location=None, created=utc(10, 25, 23, 30))
        # Sunday 01:30 CEST, before the change, is week 43 too
        add(
            session,
            "night of the change",
            category="Other",
            location=None,
            created=utc(10, 24, 23, 30),
        )
        session.commit()
        w43 = build_digest(session, period="2026-W43", zone=BERLIN, now=utc(10, 27, 8))
        w44 = build_digest(session, period="2026-W44", zone=BERLIN, now=utc(11, 3, 8))
    assert (w43.new.count, w44.new.count) == (2, 1)


def cron_trigger(schedule: Schedule) -> CronTrigger:
    """APScheduler's reading of the same schedule: the reference for DST handling."""
    return CronTrigger(
        day_of_week=WEEKDAYS[schedule.weekday],
        hour=schedule.hour,
        minute=schedule.minute,
        timezone=schedule.zone,
    )


def test_the_schedule_is_due_once_a_week_at_local_time_as_apscheduler_fires_it() -> None:
    monday = Schedule.parse("mon 08:00", BERLIN)
    assert monday.due_at("2026-W43") == utc(10, 26, 7)  # CET
    assert monday.due_at("2026-W12") == utc(3, 23, 7)  # CET
    assert monday.due_at("2026-W13") == utc(3, 30, 6)  # CEST
    assert monday.due_period(utc(11, 23, 6, 59)) == "2026-W46"
    assert monday.due_period(utc(11, 23, 7)) == PERIOD
    assert monday.due_period(utc(11, 26, 12)) == PERIOD
    for raw in ("mon 08:00", "sun 02:30", "fri 16:45", "sun 03:00"):
        schedule = Schedule.parse(raw, BERLIN)
        trigger = cron_trigger(schedule)
        fires: dict[str, list[datetime]] = {}
        fired = trigger.get_next_fire_time(None, utc(3, 1, 0))
        for _ in range(60):  # through both changes of 2026
            assert fired is not None
            # in UTC: PEP 495 makes == across zones False for times in a DST gap
            fires.setdefault(schedule.due_period(fired), []).append(fired.astimezone(UTC))
            # advance in UTC: wall-clock arithmetic would undo fold=1 and go back an hour
            fired = trigger.get_next_fire_time(fired, fired.astimezone(UTC) + timedelta(seconds=1))
        periods = list(fires)
        assert periods == [shift(periods[0], i) for i in range(len(periods))], "no week skipped"
        assert all(times[0] == schedule.due_at(period) for period, times in fires.items())
        twice = {period: times for period, times in fires.items() if len(times) > 1}
        # 02:30 on 25 October happens twice and APScheduler fires at both: the run key
        # (kind, channel, week) turns the second into a no-op.
        assert twice == (
            {"2026-W42": [utc(10, 25, 0, 30), utc(10, 25, 1, 30)]} if raw == "sun 02:30" else {}
        )


def test_a_sunday_schedule_in_the_spring_gap_still_means_one_moment() -> None:
    gap = Schedule.parse("sun 02:30", BERLIN)  # 02:30 does not exist on 29 March 2026
    assert gap.due_at("2026-W12") == utc(3, 29, 1, 30)  # 03:30 CEST
    repeated = Schedule.parse("sun 02:30", BERLIN)  # exists twice on 25 October
    assert repeated.due_at("2026-W42") == utc(10, 25, 0, 30)  # the first, 02:30 CEST


def test_periods_parse_and_shift() -> None:
    assert parse_period("2026w7") == "2026-W07"
    assert shift("2026-W01", -1) == "2025-W52" and shift("2026-W53", 1) == "2027-W01"
    with pytest.raises(InvalidValue):
        parse_period("2026-W54")
    with pytest.raises(InvalidValue):
        parse_period("last week")


def test_dates_and_numbers_read_as_each_language_writes_them() -> None:
    assert views.date_range("2026-W49", "en") == "30 Nov\u2009–\u20096 Dec 2026"
    assert views.date_range("2026-W53", "de") == "28. Dez. 2026\u2009–\u20093. Jan. 2027"
    assert views.signed(-1234, "de") == "\u22121.234" and views.signed(0, "en") == "±0"


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([0.0, 10.0], 0.9) == 9.0
    assert duration(timedelta(days=2, hours=4, minutes=7), "en") == "2 days 4 hours"
    assert duration(timedelta(minutes=59), "de") == "59 Minuten"
    assert duration(timedelta(days=1, hours=4), "de") == "1 Tag 4 Stunden"
    assert duration(timedelta(hours=23, minutes=59), "en") == "23 hours 59 minutes"
    assert duration(timedelta(days=13, hours=4), "en") == "13 days 4 hours", "never weeks"
    assert duration(timedelta(days=400), "de") == "400 Tage"


def test_digest_channels_come_from_the_configuration() -> None:
    assert digest_channels(RuntimeConfig()) == []
    config = RuntimeConfig(
        leadership_channel="CLEAD0001",
        allstaff_channel="CALL00001",
        digest_schedule="fri 16:30",
        timezone="America/New_York",
        language="de",
    )
    leaders, everyone = digest_channels(config)
    assert (leaders.kind, leaders.channel, everyone.kind, everyone.channel) == (
        "leadership",
        "CLEAD0001",
        "allstaff",
        "CALL00001",
    )
    assert leaders.schedule == Schedule(4, 16, 30, ZoneInfo("America/New_York"))
    assert leaders.locale == "de"


def test_you_said_we_did_credits_named_reporters_and_never_anonymous_ones(
    engine: Engine,
) -> None:
    with Session(engine) as session:
        named = add(
            session,
            "Drucker druckt nicht",
            category="Shop & tools",
            location="Leipzig",
            created=utc(11, 16, 9),
            resolved=timedelta(days=1),
            me_too=4,
            reporter=BOB,
            note="New printer installed.",
        )
        add(
            session,
            "My manager <!here> ignores the broken till",
            category="Other",
            location="Halle",
            created=utc(11, 17, 9),
            resolved=timedelta(days=1),
            anonymous=True,
            reporter=CAROL,
            note="Till replaced & tested.",
        )
        add(
            session,
            "Resolved last week",
            category="Other",
            location=None,
            created=utc(11, 9, 9),
            resolved=timedelta(days=1),
        )
        add(  # the leader who resolved it kept the solution to leadership
            session,
            "Kollege klaut Ladekabel",
            category="Other",
            location="Halle",
            created=utc(11, 18, 9),
            resolved=timedelta(hours=5),
            note="Talked to the colleague.",
            shared=False,
        )
        add(  # an admin marked the category confidential
            session,
            "Schichtleiter schreit Azubis an",
            category="Customer experience",
            location="Halle",
            created=utc(11, 18, 10),
            resolved=timedelta(hours=5),
            note="Spoke with the shift lead.",
        )
        session.commit()
        named_id = named.id
        post = build_you_said_we_did(
            session, period=PERIOD, zone=BERLIN, confidential=["Customer experience"]
        )
    assert (post.total, post.colleagues) == (2, 4)
    assert post.items[0].id == named_id
    assert post.items[1].reporter_id is None
    message = views.build_you_said_we_did(post, locale="en")
    body = json.dumps(message.to_payload(), ensure_ascii=False)
    assert f"<@{BOB}>" in body and "4 × a colleague said “me too”" in body
    assert CAROL not in body and "ignores the broken till" not in body, (
        "anonymous: no name, no words"
    )
    assert "Till replaced &amp; tested." in body and "<!here>" not in body
    assert "Thanks to a colleague for reporting it." in body
    assert "Ladekabel" not in body and "Talked to" not in body, "not shared"
    assert "Schichtleiter" not in body and "Spoke with" not in body, "confidential"
    with Session(engine) as session:
        quiet = build_you_said_we_did(session, period="2026-W40", zone=BERLIN)
    assert quiet.items == [] and quiet.total == 0
    assert "In KW 40 wurde nichts von dem gelöst" in plain_text(
        views.build_you_said_we_did(quiet, locale="de")
    )


def test_the_csv_lists_every_report_of_the_week(engine: Engine, week: dict[str, int]) -> None:
    with Session(engine) as session:
        add(
            session,
            '=HYPERLINK("http://evil") Kasse',
            category="Shop & tools",
            location="@Leipzig",
            created=utc(11, 19, 8),
        )
        session.commit()
        data = week_csv(session, period=PERIOD, zone=BERLIN, link_base="https://acme.slack.com/")
    assert data.startswith(b"\xef\xbb\xbf"), "a byte-order mark for spreadsheet programs"
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    # r1 r2 r3 r4 r5 r7 (duplicate, marked) r8 and the formula one; not r6 (next week)
    assert len(rows) == 8
    by_ref = {row["reference"]: row for row in rows}
    r1 = by_ref[f"FB-{1000 + week['r1']}"]
    assert r1["filed"] == "2026-11-16 09:00" and r1["acknowledged"] == "2026-11-16 10:00"
    assert r1["resolved"] == "2026-11-17 09:00" and r1["me_too"] == "2"
    assert r1["reporter"] == ALICE and r1["status"] == "resolved"
    assert by_ref[f"FB-{1000 + week['r4']}"]["reporter"] == "anonymous"
    assert by_ref[f"FB-{1000 + week['r5']}"]["filed"] == "2026-11-22 23:30"
    assert by_ref[f"FB-{1000 + week['r7']}"]["status"] == "duplicate"
    formula = next(row for row in rows if "HYPERLINK" in row["text"])
    assert formula["text"].startswith("'=HYPERLINK") and formula["location"] == "'@Leipzig"
    assert "customer_contact" not in rows[0]
    assert {row["card"] for row in rows} == {""}, "no card was delivered in this fixture"
    assert r1["duplicate_of"] == "" and r1["customers_affected"] == ""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_trend_chart_is_a_phone_sized_png(engine: Engine, week: dict[str, int]) -> None:
    with Session(engine) as session:
        digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    image = render_chart(digest.trend, locale="de")
    width, height = png_size(image)
    assert 1000 <= width <= 1600 and 0.5 <= height / width <= 1.0
    assert len(image) > 20_000, "bars, labels and a legend, not an empty canvas"


def test_the_builder_link_opens_the_same_blocks(engine: Engine, week: dict[str, int]) -> None:
    from urllib.parse import unquote

    with Session(engine) as session:
        digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    message = build_digest_message(digest, locale="en")
    url = builder_url(message)
    assert url.startswith("https://app.slack.com/block-kit-builder/#")
    decoded = json.loads(unquote(url.split("#", 1)[1]))
    assert decoded == {"blocks": message.to_payload()["blocks"]}


# --------------------------------------------------------------------------- any volume

LONG = "Ärger " * 40


def bulk_week(engine: Engine, count: int, *, seed: int = 4) -> None:
    """`count` reports in the week with long texts, places and categories, inserted in bulk
    (one executemany per table), with their search terms."""
    rng = random.Random(seed)
    start, end = week_bounds(PERIOD, BERLIN)
    categories = [f"Kategorie {i:02d} " + "x" * 80 for i in range(60)]
    places = [f"Filiale {i:04d} " + "Straße " * 25 for i in range(800)]
    texts = [f"Problem {i}: " + " ".join(rng.sample(WORDS, 8)) + LONG for i in range(300)]
    rows = []
    terms = []
    for index in range(1, count + 1):
        text = rng.choice(texts)
        created = start + (end - start) * rng.random()
        acknowledged = rng.random() < 0.5
        rows.append(
            {
                "id": index,
                "created_at": created,
                "updated_at": created,
                "source": "modal",
                "reporter_id": ALICE,
                "anonymous": False,
                "text": text,
                "category": rng.choice(categories),
                "location": rng.choice(places),
                "urgency": rng.choice(["critical", "high", "normal"]),
                "callback_requested": False,
                "status": "acknowledged" if acknowledged else "open",
                "acknowledged_at": created + timedelta(minutes=30) if acknowledged else None,
                "me_too_count": rng.randint(0, 5),
                "follow_up_at": created if rng.random() < 0.3 else None,
            }
        )
        terms += [{"report_id": index, "term": term} for term in similarity.terms(text)]
    with engine.begin() as connection:
        connection.execute(insert(Report), rows)
        connection.execute(insert(ReportTerm), terms)
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('report', 'id'), (SELECT max(id) FROM report))"
            )


WORDS = [
    *("drucker", "fritzbox", "roaming", "tarif", "rechnung", "kasse", "netz", "antenne"),
    *("hotline", "portal", "aktivierung", "router", "kabel", "vertrag", "kündigung"),
    *("filiale", "parkplatz", "tablet", "display", "akku", "ladegerät", "modem", "störung"),
    *("ausfall", "update", "firmware", "server", "login", "passwort", "termin", "beratung"),
]


def test_ten_thousand_reports_in_a_week_stay_within_block_kit_limits(bot: Bot) -> None:
    bulk_week(bot.engine, 10_000)
    with Session(bot.engine) as session:
        digest = build_digest(session, period=PERIOD, zone=BERLIN, now=NOW)
    assert digest.new.count == 10_000 and digest.themes_total >= 5
    assert digest.urgent.total > 6000 and len(digest.urgent.items) == 10
    for locale in ("en", "de"):
        message = build_digest_message(digest, locale=locale, link_base="https://acme.slack.com/")
        payload = message.to_payload()  # slack_sdk checks each block's own limits here
        assert len(payload["blocks"]) <= MAX_MESSAGE_BLOCKS
        texts = [block["text"]["text"] for block in payload["blocks"] if "text" in block]
        assert all(len(text) <= 3000 for text in texts)
        more = "…and" if locale == "en" else "…und"
        assert plain_text(message).count(more) >= 4, "categories, places and lists are cut"
    # and through Slack (the fake checks every limit), with the full CSV attached
    bot.setup_team()
    bot.clock.now = NOW
    assert len(send_due(deps_for(bot))) == 1
    bot.drain()
    (digest_post,) = [m for m in bot.slack.messages(LEADERSHIP) if m["text"].startswith("Weekly")]
    assert "…and" in json.dumps(digest_post["blocks"], ensure_ascii=False)
    table = next(f for f in bot.slack.files if f["filename"].endswith(".csv"))
    assert len(table["content"].decode("utf-8-sig").splitlines()) == 10_001


def test_a_day_in_the_week_means_the_local_day() -> None:
    assert week_bounds("2026-W01", BERLIN)[0].astimezone(BERLIN).date() == date(2025, 12, 29)
