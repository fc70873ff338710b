"""Outage bursts become one story: similar reports in a burst share one incident card."""

from __future__ import annotations

import json
import random
import threading
import time
import weakref
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session, col, func, select

from feedbot.core import outbox as core_outbox
from feedbot.core.liveness import Liveness
from feedbot.models import (
    IncidentGroup,
    OutboxMessage,
    OutboxStatus,
    Report,
    TimelineEntry,
    utcnow,
)
from feedbot.slack.app import build_app
from feedbot.slack.inbox import Inbox
from feedbot.slack.outbox import OutboxSender
from tests.fakeslack import FakeSlack
from tests.harness import ALICE, BOB, CAROL, LEADER, LEADERSHIP, Bot, Clock, around, statements

OUTAGE = "Kein Netz in Leipzig Mitte, Mobilfunk komplett ausgefallen, Kunden ohne Empfang"


def top_level(bot: Bot, channel: str = LEADERSHIP) -> list[dict[str, object]]:
    return [m for m in bot.slack.messages(channel) if not m.get("thread_ts")]


# Keyed by id with a weak reference to check it: a finished test's bot may have had the
# same id, and its reporters must not count as this bot's.
REPORTED_BY_DM: dict[int, tuple[weakref.ref[Bot], set[str]]] = {}


def file_dm(bot: Bot, user: str, text: str) -> None:
    """A report by direct message; a second one soon after would ask whether it is about the
    first, so a person's further reports come with `/feedback` instead."""
    kept = REPORTED_BY_DM.get(id(bot))
    if kept is None or kept[0]() is not bot:
        kept = REPORTED_BY_DM[id(bot)] = (weakref.ref(bot), set())
    reported = kept[1]
    if user in reported:
        response = bot.command(user, text)
    else:
        reported.add(user)
        response, _ = bot.message(user, text, channel=bot.slack.dm_channel(user), channel_type="im")
    assert response.status == 200


def test_below_the_threshold_every_report_keeps_its_card(bot: Bot) -> None:
    bot.setup_team()
    for user in (ALICE, BOB, CAROL, LEADER):
        file_dm(bot, user, OUTAGE)
    bot.drain()
    assert len(top_level(bot)) == 4
    assert all(r.incident_id is None for r in bot.reports())


def test_a_burst_forms_one_incident_that_later_reports_join(bot: Bot) -> None:
    bot.setup_team()
    users = [f"UFIELD{n:03d}" for n in range(12)]
    for number, user in enumerate(users):
        bot.slack.add_user(user, locale="de-DE")
        file_dm(bot, user, f"{OUTAGE} (Shop {number % 3})")
        bot.clock.advance(seconds=30)
    file_dm(bot, ALICE, "The coffee machine in shop Halle is broken")
    bot.drain()
    reports = bot.reports()
    grouped = [r for r in reports if r.incident_id is not None]
    assert len(grouped) == 12 - 4 + 4, "the four reports before the burst joined it too"
    assert {r.incident_id for r in grouped} == {1}
    cards = top_level(bot)
    assert len(cards) == 4 + 1 + 1, "four cards before the burst, one incident card, one unrelated"
    incident_card = next(m for m in cards if "INC-101" in str(m["text"]))
    assert "12 similar reports" in str(incident_card["text"])
    assert "*Reported by*\\n12 named \\u00b7 0 anonymous reports" in json.dumps(
        incident_card["blocks"]
    )
    for user in users:
        assert any("Danke!" in dm for dm in bot.dms(user)), "every reporter still gets a receipt"


@pytest.mark.parametrize("through_inbox", [True, False], ids=["inbox", "in-request"])
def test_a_report_joining_a_burst_is_written_with_its_group(bot: Bot, through_inbox: bool) -> None:
    """Its timeline says it was created, then grouped, and filing looks its text up once
    (the receipt's suggestions reuse the grouping's lookup). Placed before it is stored
    where that is safe (the inbox's worker holds SQLite's write lock; PostgreSQL always),
    its row is written once, with its group."""
    bot.setup_team()
    for number in range(5):  # the fifth forms the group
        user = f"UFIELD{number:03d}"
        bot.slack.add_user(user)
        file_dm(bot, user, f"{OUTAGE} (Shop {number})")
    inbox = Inbox(bot.deps, liveness=Liveness(bot.engine)) if through_inbox else None
    if inbox is not None:
        bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(bot.engine, "before_cursor_execute", listen)
    try:
        assert bot.command(ALICE, f"{OUTAGE} (Shop 9)").status == 200
        if inbox is not None:
            assert inbox.drain() == 1
    finally:
        event.remove(bot.engine, "before_cursor_execute", listen)
    joined = bot.report()
    assert joined.incident_id is not None
    with Session(bot.engine) as session:
        group = session.get(IncidentGroup, joined.incident_id)
        timeline = session.exec(
            select(TimelineEntry.action, TimelineEntry.detail)
            .where(TimelineEntry.report_id == joined.id)
            .order_by(col(TimelineEntry.id))
        ).all()
    assert group is not None
    assert [tuple(entry) for entry in timeline] == [("created", None), ("grouped", group.reference)]
    lookups = [sql for sql in statements if "sum(CASE" in sql]
    assert len(lookups) == 1, "the receipt's suggestions come from the grouping's lookup"
    updates = [sql for sql in statements if sql.startswith("UPDATE report SET incident_id")]
    if through_inbox or bot.engine.dialect.name == "postgresql":
        assert updates == [], "written once, with its group"
    assert sum(sql.startswith("INSERT INTO report ") for sql in statements) == 1


def test_a_report_joining_a_burst_locks_the_card_s_waiting_update_last(bot: Bot) -> None:
    """Every report of a burst needs the group card's waiting update, which it locks until
    its transaction ends (`outbox.waiting_edit`): locked earlier, the reports of a burst
    took turns for all the work after it (the receipt, the done mark), about 15 ms each in
    an outage on PostgreSQL. It is the last statement before the commit."""
    bot.setup_team()
    for number in range(6):
        user = f"UFIELD{number:03d}"
        bot.slack.add_user(user)
        file_dm(bot, user, f"{OUTAGE} (Shop {number})")
    bot.drain()
    file_dm(bot, "UFIELD000", f"{OUTAGE} (Shop 7)")  # the card's update now waits
    inbox = Inbox(bot.deps, liveness=Liveness(bot.engine))
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    with statements(bot.engine) as seen:
        assert bot.command(ALICE, f"{OUTAGE} (Shop 9)").status == 200
        assert inbox.drain() == 1
    assert bot.report().incident_id is not None
    (lock,) = [n for n, (_, sql) in enumerate(seen) if "outbox_message.update_of_id" in sql]
    before, after = around(seen, lock)
    assert after[0] == "COMMIT", after
    assert any(sql.startswith("INSERT INTO report ") for sql in before), "the report's"
    assert any(sql.startswith("INSERT INTO outbox_message") for sql in before), "the receipt"
    done_mark = "UPDATE inbox_entry SET body="  # the take counts attempts instead
    assert any(sql.startswith(done_mark) for sql in before), "the done mark"


def test_work_left_for_the_commit_runs_after_the_rest_once_and_never_after_a_rollback(
    engine: Engine,
) -> None:
    """`at_commit`: after everything the transaction did, savepoints included; once per key,
    in the keys' order (rows locked in one order by every transaction); dropped with the
    savepoint or transaction it was left in."""
    from feedbot.db import at_commit

    ran: list[str] = []
    with Session(engine) as session:
        session.connection()
        at_commit(session, ("home", "b"), lambda: ran.append("home b"))
        at_commit(session, ("card", 1), lambda: ran.append("first"))
        at_commit(session, ("card", 1), lambda: ran.append("card"))
        at_commit(session, ("home", "a"), lambda: ran.append("home a"))
        with session.begin_nested():
            at_commit(session, ("saved", 1), lambda: ran.append("saved"))
        assert ran == [], "a savepoint's release is not the commit"
        try:
            with session.begin_nested():
                at_commit(session, ("saved", 1), lambda: ran.append("saved"))  # asked again
                raise LookupError("this request's work failed")
        except LookupError:
            pass
        try:
            with session.begin_nested():
                at_commit(session, ("undone", 1), lambda: ran.append("undone"))
                raise LookupError("the request's work failed")
        except LookupError:
            pass
        ran.append("work")
        session.commit()
        assert ran == ["work", "card", "home a", "home b", "saved"]
        session.connection()
        at_commit(session, ("card", 1), lambda: ran.append("rolled back"))
        session.rollback()
        session.commit()
        session.connection()
        at_commit(session, ("card", 1), lambda: ran.append("closed"))
        session.close()
        session.connection()
        session.commit()
    assert ran == ["work", "card", "home a", "home b", "saved"]


def test_bursts_of_two_leadership_channels_do_not_wait_for_each_other(postgres_url: str) -> None:
    """The lock under which reports start a group (PostgreSQL) is one per leadership
    channel: reports of other channels never join them, and waited for nothing."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from feedbot.core.incidents import lock_burst
    from feedbot.db import make_engine

    engine = make_engine(postgres_url)
    try:
        with Session(engine) as holder, Session(engine) as other:
            lock_burst(holder, "CLEADNORTH")
            other.execute(text("SET LOCAL lock_timeout = '2s'"))
            lock_burst(other, "CLEADSOUTH")  # at once
            lock_burst(other, None)  # nor do reports without a leadership channel wait
            other.rollback()
            other.execute(text("SET LOCAL lock_timeout = '100ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                lock_burst(other, "CLEADNORTH")
    finally:
        engine.dispose()


def test_no_grouping_when_turned_off(bot: Bot) -> None:
    bot.setup_team()
    bot.configure(burst_threshold="0")
    for number in range(7):
        user = f"UFIELD{number:03d}"
        bot.slack.add_user(user)
        file_dm(bot, user, OUTAGE)
    bot.drain()
    assert len(top_level(bot)) == 7


def test_triage_on_the_incident_reaches_every_reporter_once(bot: Bot) -> None:
    bot.setup_team()
    users = [f"UFIELD{n:03d}" for n in range(6)]
    for user in users:
        bot.slack.add_user(user)
        file_dm(bot, user, OUTAGE)
    file_dm(bot, users[0], OUTAGE + " immer noch")
    bot.drain()
    with Session(bot.engine) as session:
        group = session.exec(select(IncidentGroup)).one()
    bot.press(BOB, "incident_acknowledge", str(group.id))
    assert all(r.acknowledged_at is None for r in bot.reports())
    bot.press(LEADER, "incident_acknowledge", str(group.id))
    bot.drain()
    assert all(r.acknowledged_at is not None for r in bot.reports())
    assert sum("was acknowledged" in dm for dm in bot.dms(users[0])) == 1, "one notice per person"
    bot.press(LEADER, "incident_resolve", str(group.id))
    view = bot.last_view()
    note = "Sendemast Leipzig Mitte wieder in Betrieb."
    assert (
        bot.submit(LEADER, view, {"note": {"type": "plain_text_input", "value": note}}).status
        == 200
    )
    bot.drain()
    assert {r.status for r in bot.reports()} == {"resolved"}
    for user in users:
        assert sum(note in dm for dm in bot.dms(user)) == 1, user
    card = next(m for m in top_level(bot) if "INC-" in str(m["text"]))
    assert "incident_resolve" not in json.dumps(card["blocks"])
    assert any(
        "resolved the incident (7 reports)" in str(m["text"])
        for m in bot.slack.messages(LEADERSHIP)
    )


@pytest.fixture
def limited_slack(clock: Clock) -> Iterator[FakeSlack]:
    """A fake Slack that enforces about one message per second per channel, like Slack."""
    with FakeSlack(channel_rate_limit=1.0) as slack:
        yield slack
        slack.assert_no_violations()


def test_a_thousand_reports_in_five_minutes_reach_leadership_as_a_few_cards(
    engine: Engine, limited_slack: FakeSlack, clock: Clock
) -> None:
    bot = Bot(engine=engine, slack=limited_slack, clock=clock)
    bot.setup_team()
    rng = random.Random(7)
    people = [f"UFIELD{n:03d}" for n in range(200)]
    for user in people:
        limited_slack.add_user(user, locale="de-DE")
    extras = [
        "seit 8 Uhr",
        "bitte dringend",
        "Kunden beschweren sich",
        "auch im Shop",
        "LTE weg",
        "5G weg",
    ]
    for number in range(1000):
        user = people[number % 200]
        file_dm(bot, user, f"{OUTAGE}, {rng.choice(extras)}")
        clock.advance(seconds=0.3)  # 1,000 reports over five minutes
    sender = OutboxSender(engine, bot.sender.client, clock=utcnow, identities=bot.deps.identities)
    started = time.monotonic()
    while time.monotonic() - started < 60:
        sender.deliver_due(limit=50)
        cards = top_level(bot)
        if any("1,000 similar reports" in str(m["text"]) for m in cards):
            break
        time.sleep(0.01)
    reached = time.monotonic() - started
    assert any("1,000 similar reports" in str(m["text"]) for m in top_level(bot)), "within 60 s"
    assert len(top_level(bot)) <= 10
    with Session(engine) as session:
        stored = session.exec(select(func.count()).select_from(Report)).one()
        grouped = session.exec(
            select(func.count()).select_from(Report).where(col(Report.incident_id).is_not(None))
        ).one()
    assert stored == 1000 and grouped >= 990
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not sender.deliver_due(limit=50):
            with Session(engine) as session:
                left = session.exec(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(
                        col(OutboxMessage.status).in_([OutboxStatus.PENDING, OutboxStatus.SENDING])
                    )
                ).one()
            if not left:
                break
            time.sleep(0.05)
    receipts = sum(
        1
        for user in people
        for m in limited_slack.dm_messages(user)
        if m.get("bot_id") and "Danke!" in str(m["text"])
    )
    # The first report of each person came by DM and got its receipt there; the other 800,
    # by /feedback, were answered in the command's reply (file_dm checked each).
    assert receipts == 200, "every DM reporter got their receipt, once"
    print(
        json.dumps(
            {
                "burst_reports": 1000,
                "cards": len(top_level(bot)),
                "seconds_to_leadership": round(reached, 2),
            }
        )
    )


@pytest.mark.parametrize("loose", [4, 3])
def test_two_reports_of_a_burst_at_the_same_instant_start_one_group(bot: Bot, loose: int) -> None:
    """`loose` similar reports, then two at the same instant: with four, each would start a
    group alone; with three, only both together make five."""
    import threading

    bot.setup_team()
    users = [f"UFIELD{n:03d}" for n in range(loose + 2)]
    for user in users:
        bot.slack.add_user(user)
    for user in users[:loose]:
        file_dm(bot, user, OUTAGE)
    start = threading.Barrier(2)

    def file(user: str) -> None:
        start.wait()
        file_dm(bot, user, OUTAGE)

    threads = [threading.Thread(target=file, args=(user,)) for user in users[loose:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with Session(bot.engine) as session:
        groups = session.exec(select(IncidentGroup)).all()
        grouped = session.exec(
            select(func.count()).select_from(Report).where(col(Report.incident_id).is_not(None))
        ).one()
    assert len(groups) == 1
    assert grouped == loose + 2


def test_a_burst_redraws_the_incident_card_once_when_it_is_sent(bot: Bot) -> None:
    """The first new member queues an update of the card; the next ones find it waiting and
    add none, and the one sent is drawn then, with every member counted."""
    bot.setup_team()
    users = [f"UFIELD{n:03d}" for n in range(11)]
    for user in users:
        bot.slack.add_user(user)
    for user in users[:6]:
        file_dm(bot, user, OUTAGE)
    bot.drain()
    updates_before = len(bot.slack.calls_to("chat.update"))
    for user in users[6:]:
        file_dm(bot, user, OUTAGE)
    with Session(bot.engine) as session:
        queued = session.exec(
            select(OutboxMessage).where(OutboxMessage.purpose == "incident_card_update")
        ).all()
    waiting = [entry for entry in queued if entry.status == OutboxStatus.PENDING]
    assert len(waiting) == 1
    assert not any(entry.status == OutboxStatus.SUPERSEDED for entry in queued)
    assert "blocks" not in json.loads(waiting[0].payload), "drawn when sent, not when queued"
    bot.drain()
    updates = bot.slack.calls_to("chat.update")[updates_before:]
    assert len(updates) == 1
    assert "11 similar reports" in str(updates[0].args["text"])


def test_a_sender_claiming_the_waiting_update_meanwhile_draws_the_new_member(bot: Bot) -> None:
    """A report that finds the card's update waiting adds none, and locks it as it commits.
    A sender looking meanwhile leaves it (PostgreSQL skips a locked entry rather than wait
    for it, so it never waits in a cycle with a report that holds other rows; on SQLite it
    waits for the one writer), and claims it once the report is committed: the card drawn
    then counts the report."""
    bot.setup_team()
    for number in range(7):
        bot.slack.add_user(f"UFIELD{number:03d}")
        file_dm(bot, f"UFIELD{number:03d}", OUTAGE)
        if number == 5:
            bot.drain()  # the group and its card exist; the seventh report's update waits
    with Session(bot.engine) as session:
        group = session.exec(select(IncidentGroup)).one()
        card = session.get(OutboxMessage, group.card_message_id)
        assert card is not None
    looks: list[tuple[float, list[str]]] = []

    def look() -> None:
        with Session(bot.engine) as sender:
            claims = core_outbox.claim_due(sender, now=bot.clock(), limit=10)
        looks.append((time.monotonic(), [claim.entry.purpose for claim in claims]))

    with Session(bot.engine) as filing:
        group = filing.get(IncidentGroup, group.id)
        assert group is not None
        group.updated_at = utcnow()  # filing writes first (on SQLite: the write lock)
        filing.add(group)
        filing.flush()
        waiting = core_outbox.waiting_edit(
            filing, of_id=card.id, method="chat.update", purpose="incident_card_update"
        )
        assert waiting is not None
        sender = threading.Thread(target=look)
        sender.start()
        time.sleep(0.5)
        if bot.engine.dialect.name == "sqlite":
            assert not looks, "the look waits for the transaction that counted on the update"
        else:
            sender.join(5)
            assert looks and "incident_card_update" not in looks[0][1], "left while locked"
        committed_at = time.monotonic()
        filing.commit()
    sender.join(10)
    if bot.engine.dialect.name != "sqlite":
        look()
    claimed_at, purposes = looks[-1]
    assert claimed_at >= committed_at and "incident_card_update" in purposes


def test_a_card_update_whose_group_is_gone_is_not_sent(bot: Bot) -> None:
    bot.setup_team()
    for number in range(6):
        bot.slack.add_user(f"UFIELD{number:03d}")
        file_dm(bot, f"UFIELD{number:03d}", OUTAGE)
    bot.drain()
    bot.slack.add_user("UFIELD999")
    file_dm(bot, "UFIELD999", OUTAGE)
    updates_before = len(bot.slack.calls_to("chat.update"))
    with Session(bot.engine) as session:
        group = session.exec(select(IncidentGroup)).one()
        for report in session.exec(select(Report)).all():
            report.incident_id = None
            session.add(report)
        session.flush()
        session.delete(group)
        session.commit()
    bot.drain()
    assert len(bot.slack.calls_to("chat.update")) == updates_before
    with Session(bot.engine) as session:
        entry = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.purpose == "incident_card_update")
            .order_by(col(OutboxMessage.id))
        ).all()[-1]
    assert entry.status == OutboxStatus.SUPERSEDED, "nothing to send is no failure"


def test_a_report_joining_a_group_writes_the_group_only_when_its_urgency_changes(
    bot: Bot,
) -> None:
    """Every report of a burst joins the group; a joiner that changes nothing of it writes
    nothing to its row (on PostgreSQL a written row stays locked until the report's
    transaction ends, and every later joiner would wait for it). One more urgent than the
    group raises the group's urgency, its response target."""
    from feedbot.core.config import load_config
    from feedbot.core.reports import ReportDraft
    from feedbot.models import ReportSource, Urgency
    from feedbot.slack.flows import file_report

    bot.setup_team()
    for number in range(6):
        bot.slack.add_user(f"UFIELD{number:03d}")
        file_dm(bot, f"UFIELD{number:03d}", OUTAGE)
    bot.drain()
    writes: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE INCIDENT_GROUP"):
            writes.append(statement)

    def join(user: str, urgency: Urgency) -> int | None:
        bot.clock.advance(seconds=1)  # as in a burst: each report a moment later
        with Session(bot.engine) as session:
            report = file_report(
                session,
                bot.deps,
                reporter_id=user,
                draft=ReportDraft(text=OUTAGE, source=ReportSource.COMMAND, urgency=urgency),
                config=load_config(session),
                now=bot.clock(),
            )
            session.commit()
            return report.incident_id

    event.listen(bot.engine, "before_cursor_execute", seen)
    try:
        group_id = join("UFIELD100", Urgency.NORMAL)
        assert group_id is not None and writes == []
        assert join("UFIELD101", Urgency.CRITICAL) == group_id
        assert writes, "the group's urgency changed"
    finally:
        event.remove(bot.engine, "before_cursor_execute", seen)
    with Session(bot.engine) as session:
        group = session.get(IncidentGroup, group_id)
        assert group is not None and group.urgency == Urgency.CRITICAL
