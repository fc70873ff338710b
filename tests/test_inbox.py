"""The inbox: requests that change something are stored and acked at once, handled after,
once, whatever fails in between (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, func, select

from feedbot.core import inbox as core_inbox
from feedbot.core import outbox as core_outbox
from feedbot.core.liveness import Liveness
from feedbot.db import arrivals_engine, session_scope
from feedbot.metrics import InboxDepth, OutboxBacklog
from feedbot.models import (
    InboxEntry,
    InboxStatus,
    OutboxMessage,
    OutboxStatus,
    Report,
    utcnow,
)
from feedbot.slack import inbox as slack_inbox
from feedbot.slack.app import build_app
from feedbot.slack.inbox import Inbox
from tests import slack_payloads as payloads
from tests.harness import ALICE, BOB, CAROL, INTAKE, LEADER, LEADERSHIP, Bot, Clock
from tests.test_admin import open_group, state_of
from tests.test_reporting import form_values


@pytest.fixture
def inbox(bot: Bot) -> Iterator[Inbox]:
    """The bot, with the inbox `feedbot run` uses; its workers are driven by the test."""
    inbox = Inbox(bot.deps, liveness=Liveness(bot.engine))
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=inbox)
    bot.setup_team()
    yield inbox


def entries(bot: Bot) -> list[InboxEntry]:
    """The inbox, once what arrived is moved into it (on SQLite the worker does that first)."""
    arrivals = arrivals_engine(bot.engine)
    if arrivals is not None:
        core_inbox.move_arrivals(arrivals, bot.engine)
    with Session(bot.engine) as session:
        return list(session.exec(select(InboxEntry).order_by(InboxEntry.id)))  # type: ignore[arg-type]


def report_count(bot: Bot) -> int:
    with Session(bot.engine) as session:
        return int(session.exec(select(func.count()).select_from(Report)).one())


def command_body(bot: Bot, user: str, text: str) -> str:
    form = payloads.slash_command(
        user=user,
        text=text,
        channel="CGENERAL1",
        channel_name="general",
        response_url=bot.slack.new_response_url(),
        trigger_id=bot.slack.new_trigger_id(),  # expires as Slack's do
    )
    return urlencode(form)


def test_a_command_is_acked_at_once_and_its_receipt_follows_through_response_url(
    bot: Bot, inbox: Inbox
) -> None:
    body = command_body(bot, ALICE, "Kasse 3 in Jena druckt keine Belege")
    response = bot.dispatch(body, "application/x-www-form-urlencoded")
    assert response.status == 200
    assert "being filed" in json.loads(response.body)["text"]
    assert report_count(bot) == 0, "nothing but the inbox entry is written in the request"
    # Slack's client sending the same command again (same trigger_id) lands once.
    assert bot.dispatch(body, "application/x-www-form-urlencoded").status == 200
    assert len(entries(bot)) == 1

    assert inbox.drain() == 1
    assert report_count(bot) == 1
    (entry,) = entries(bot)
    assert (entry.status, entry.body) == (InboxStatus.DONE, "")
    bot.drain()
    (answer,) = bot.slack.responses
    assert "FB-1001" in answer["text"]
    assert answer["response_type"] == "ephemeral"
    assert any(not m.get("thread_ts") for m in bot.slack.messages(LEADERSHIP)), "the card"


def test_an_answer_the_response_url_no_longer_takes_comes_by_dm(
    bot: Bot, inbox: Inbox, clock: Clock
) -> None:
    """Slack takes a command's answers at its response_url for 30 minutes. Past that (every
    replica was down after the ack, say) the person still hears what became of it."""
    bot.slack.clock = lambda: clock.now.timestamp()
    body = command_body(bot, ALICE, "Kasse 3 in Jena druckt keine Belege")
    assert bot.dispatch(body, "application/x-www-form-urlencoded").status == 200
    clock.advance(minutes=31)  # the request waited in the inbox
    assert inbox.drain() == 1
    bot.drain()
    assert bot.slack.responses == [] and len(bot.slack.refused_responses) == 1
    assert any("FB-1001" in text for text in bot.dms(ALICE))

    # An answer that waited in the outbox as long is not even tried there: Slack's 30
    # minutes count from the command, a little before the answer was queued.
    body = command_body(bot, ALICE, "Kasse 4 auch")
    assert bot.dispatch(body, "application/x-www-form-urlencoded").status == 200
    assert inbox.drain() == 1
    clock.advance(minutes=30)
    bot.drain()
    assert len(bot.slack.refused_responses) == 1 and bot.slack.responses == []
    assert any("FB-1002" in text for text in bot.dms(ALICE))


def test_an_event_is_stored_once_and_filed_once_whatever_the_retries(
    bot: Bot, inbox: Inbox
) -> None:
    response, ts = bot.message(ALICE, "WLAN im Shop Erfurt fällt ständig aus", event_id="Ev1")
    assert (response.status, response.body) == (200, "")
    for retry in (1, 2):
        response, _ = bot.message(
            ALICE, "WLAN im Shop Erfurt fällt ständig aus", ts=ts, event_id="Ev1", retry_num=retry
        )
        assert response.status == 200
    assert len(entries(bot)) == 1
    inbox.drain()
    bot.message(ALICE, "WLAN im Shop Erfurt fällt ständig aus", ts=ts, event_id="Ev1", retry_num=3)
    assert inbox.drain() == 0, "a retry after the work was done finds its key"
    assert report_count(bot) == 1
    bot.drain()
    receipts = [m for m in bot.slack.messages(INTAKE) if m.get("thread_ts") == ts]
    assert len(receipts) == 1


def test_work_that_fails_before_commit_leaves_nothing_and_is_done_once_later(
    bot: Bot, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot.dispatch(
        command_body(bot, ALICE, "Router Lager Süd blinkt rot"), "application/x-www-form-urlencoded"
    )
    real_finish = core_inbox.finish

    def crash(*args: object, **kwargs: object) -> None:
        raise OperationalError("COMMIT", {}, Exception("connection lost"))

    monkeypatch.setattr(core_inbox, "finish", crash)
    inbox.drain()
    assert report_count(bot) == 0, "the report was rolled back with the failed entry"
    (entry,) = entries(bot)
    assert (entry.status, entry.attempts) == (InboxStatus.PENDING, 1)
    assert entry.last_error and "connection lost" in entry.last_error

    monkeypatch.setattr(core_inbox, "finish", real_finish)
    bot.clock.advance(seconds=5)  # its retry is due
    assert inbox.drain() == 1
    assert report_count(bot) == 1
    bot.drain()
    assert len(bot.slack.responses) == 1, "one receipt"


def test_a_request_no_retry_can_mend_is_set_aside(
    bot: Bot, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feedbot.slack.features import intake

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(intake, "_file", broken)
    bot.message(ALICE, "Kasse 1 hängt", event_id="EvBug")
    inbox.drain()
    (entry,) = entries(bot)
    assert entry.status == InboxStatus.FAILED
    assert entry.body, "kept for a look"
    with Session(bot.engine) as session:
        assert core_inbox.depth(session, now=bot.clock()).failed == 1


def test_modals_stay_in_the_request_and_buttons_go_through_the_inbox(
    bot: Bot, inbox: Inbox
) -> None:
    bot.dispatch(command_body(bot, ALICE, ""), "application/x-www-form-urlencoded")
    assert bot.slack.calls_to("views.open"), "the form opened inside the request"
    assert entries(bot) == []

    _, ts = bot.message(ALICE, "Drucker im Shop Gera druckt nur Streifen", event_id="Ev2")
    inbox.drain()
    bot.drain()
    receipt = next(m for m in bot.slack.messages(INTAKE) if m.get("thread_ts") == ts)
    response = bot.click(BOB, INTAKE, receipt["ts"], "report_me_too")
    assert response.status == 200
    report = bot.report()
    assert report.me_too_count == 0
    inbox.drain()
    assert bot.report(report.id).me_too_count == 1


def test_the_digest_preview_is_answered_at_once_and_posted_when_ready(
    bot: Bot, inbox: Inbox
) -> None:
    from tests.harness import LEADER

    response = bot.dispatch(
        command_body(bot, LEADER, "digest"), "application/x-www-form-urlencoded"
    )
    assert "digest preview" in json.loads(response.body)["text"]
    assert bot.slack.responses == []
    inbox.drain()
    bot.drain()
    assert len(bot.slack.responses) == 1


def test_a_late_request_is_logged_while_the_workers_are_busy_elsewhere(
    bot: Bot, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The bot that answers watches the depth, also while its workers' process is busy with
    a backlog or down: here no worker takes anything at all."""

    class Elsewhere:
        woken = 0

        def wake(self) -> None:
            self.woken += 1

    elsewhere = Elsewhere()
    answering = Inbox(bot.deps, elsewhere=elsewhere, depth_every=0.05)
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=answering)
    bot.message(ALICE, "Kasse 2 hängt", event_id="Ev3")
    assert elsewhere.woken == 1
    bot.clock.advance(seconds=6)
    with caplog.at_level(logging.WARNING, logger="feedbot.slack.inbox"):
        answering.start()
        try:
            deadline = time.monotonic() + 5
            while "inbox falling behind" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            answering.stop()
    assert "inbox falling behind: 1 requests waiting, the oldest for 6.0 s" in caplog.text
    assert [entry.status for entry in entries(bot)] == [InboxStatus.PENDING]


def test_depth_and_age_are_measured_and_a_late_request_logged(
    bot: Bot, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    bot.message(ALICE, "Kasse 2 hängt", event_id="Ev3")
    bot.message(ALICE, "Kasse 5 hängt", event_id="Ev4")
    bot.clock.advance(seconds=7)
    with caplog.at_level(logging.WARNING, logger="feedbot.slack.inbox"):
        depth = inbox.check_depth()
    assert depth is not None and depth.pending == 2 and depth.oldest_seconds == 7
    assert "inbox falling behind: 2 requests waiting" in caplog.text
    metrics = {
        sample.name: sample.value
        for family in InboxDepth(bot.engine, clock=bot.clock).collect()
        for sample in family.samples
    }
    assert metrics["feedbot_inbox_depth"] == 2
    assert metrics["feedbot_inbox_oldest_seconds"] == 7


def test_a_dead_process_outbox_claims_are_taken_over_once_its_call_cannot_land(bot: Bot) -> None:
    """A dead process's post is taken over `POST_TAKEN_OVER_AFTER` after its call began (it is
    rechecked, and a late copy deleted later); anything else once its call cannot land."""
    now = bot.clock()
    with session_scope(bot.engine) as session:
        for conversation, method in [
            ("C1", "chat.postMessage"),
            ("C4", "chat.update"),
            ("C2", "chat.postMessage"),
            ("C3", "chat.postMessage"),
        ]:
            core_outbox.enqueue(
                session, conversation=conversation, method=method, payload={"text": "x"}, now=now
            )
    mine = Liveness(bot.engine)
    mine.start()
    try:
        with Session(bot.engine, expire_on_commit=False) as session:
            core_outbox.claim_due(session, now=now, limit=2, owner="12345")  # a dead process
            core_outbox.claim_due(session, now=now, limit=1, owner=mine.owner)
            core_outbox.claim_due(session, now=now, limit=1)  # the CLI: left to its lease
        with session_scope(bot.engine) as session:
            assert mine.take_over(session, now=now) == 2
        with Session(bot.engine, expire_on_commit=False) as session:
            almost = now + core_outbox.POST_TAKEN_OVER_AFTER - timedelta(seconds=0.5)
            early = core_outbox.claim_due(session, now=almost)
            assert early == [], "the dead process's calls may still land"
            soon = now + core_outbox.POST_TAKEN_OVER_AFTER + timedelta(seconds=0.5)
            posts = core_outbox.claim_due(session, now=soon)
            assert early == core_outbox.claim_due(session, now=soon), "not the edit yet"
            later = now + core_outbox.CALL_TIMEOUT + timedelta(seconds=1)
            edits = core_outbox.claim_due(session, now=later)
        assert [(claim.entry.conversation, claim.recheck) for claim in posts] == [("C1", True)]
        assert [(claim.entry.conversation, claim.recheck) for claim in edits] == [("C4", True)]
        # Until when the dead post's call may land: its look for copies is due then.
        assert posts[0].entry.may_land_until == now + core_outbox.CALL_TIMEOUT
        assert edits[0].entry.may_land_until is None
        with Session(bot.engine) as session:
            sending = session.exec(
                select(func.count()).where(OutboxMessage.status == OutboxStatus.SENDING)
            ).one()
        assert sending == 4
    finally:
        mine.stop()


def test_another_live_process_keeps_its_claims(bot: Bot) -> None:
    if bot.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serves one process")
    now = bot.clock()
    with session_scope(bot.engine) as session:
        core_outbox.enqueue(
            session, conversation="C1", method="chat.postMessage", payload={"text": "x"}, now=now
        )
    other, mine = Liveness(bot.engine), Liveness(bot.engine)
    other.start()
    mine.start()
    try:
        with Session(bot.engine) as session:
            core_outbox.claim_due(session, now=now, owner=other.owner)
        with session_scope(bot.engine) as session:
            assert mine.take_over(session, now=now) == 0
        other.stop()  # its session ends as when its process dies
        with session_scope(bot.engine) as session:
            assert mine.take_over(session, now=now) == 1
    finally:
        mine.stop()


def test_only_requests_that_change_something_are_deferred() -> None:
    modal = slack_inbox._modal_actions()
    command = {"command": "/feedback", "trigger_id": "T1"}
    assert slack_inbox.classify(command | {"text": "help"}, modal) is None
    assert slack_inbox.classify(command | {"text": "mine"}, modal) is None
    assert slack_inbox.classify(command | {"text": ""}, modal) is None
    assert slack_inbox.classify(command | {"text": "Kasse"}, modal) == (
        "command",
        "command:/feedback:T1",
    )
    press = {"type": "block_actions", "trigger_id": "T2", "user": {"id": ALICE}}
    assert (
        slack_inbox.classify(press | {"actions": [{"action_id": "report_open_form"}]}, modal)
        is None
    )
    assert slack_inbox.classify(press | {"actions": [{"action_id": "triage_claim"}]}, modal) == (
        "block_actions",
        "action:T2",
    )
    in_modal = press | {"actions": [{"action_id": "x"}], "view": {"type": "modal"}}
    assert slack_inbox.classify(in_modal, modal) is None
    assert slack_inbox.classify({"type": "view_submission"}, modal) is None
    event = {"type": "event_callback", "event_id": "Ev9"}
    assert slack_inbox.classify(event | {"event": {"type": "message"}}, modal) == (
        "event:message",
        "event:Ev9",
    )
    assert slack_inbox.classify(event | {"event": {"type": "app_uninstalled"}}, modal) is None


def test_the_inbox_command_shows_the_backlog_and_what_failed(
    bot: Bot, inbox: Inbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from feedbot.cli import main
    from feedbot.settings import get_settings

    bot.message(ALICE, "Kasse 2 hängt", event_id="Ev5")
    with session_scope(bot.engine) as session:
        session.add(
            InboxEntry(
                kind="event:message",
                dedupe_key="event:Ev6",
                body="{}",
                status=InboxStatus.FAILED,
                attempts=5,
                last_error="OperationalError: gone",
            )
        )
    monkeypatch.setenv("DATABASE_URL", bot.engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        assert main(["inbox"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "waiting: 1" in out and "failed: 1" in out
    assert "event:message" in out and "OperationalError: gone" in out


def open_report_form(bot: Bot, user: str) -> dict[str, object]:
    bot.dispatch(command_body(bot, user, ""), "application/x-www-form-urlencoded")
    return bot.last_view()


def test_a_form_is_checked_in_the_request_then_filed_by_the_inbox(bot: Bot, inbox: Inbox) -> None:
    view = open_report_form(bot, ALICE)
    too_long = form_values(
        "Kasse 2 in Erfurt", location={"type": "plain_text_input", "value": "x" * 300}
    )
    refused = bot.submit(ALICE, view, too_long, forged=True)
    assert json.loads(refused.body)["response_action"] == "errors", "Slack shows it in the form"
    assert entries(bot) == [], "a form refused in the request is not stored"

    submission = form_values("Kasse 2 in Erfurt nimmt keine Karten an")
    response = bot.submit(ALICE, view, submission)
    assert (response.status, response.body) == (200, ""), "the form closes at once"
    assert report_count(bot) == 0, "only the inbox entry is written in the request"
    assert bot.submit(ALICE, view, submission).status == 200, "the same submission again"
    (entry,) = entries(bot)
    assert entry.kind == "view_submission"
    assert ALICE not in entry.body and "Erfurt" not in entry.body, "sealed while it waits"

    assert inbox.drain() == 1
    assert report_count(bot) == 1
    bot.drain()
    assert any("FB-1001" in dm for dm in bot.dms(ALICE)), "the receipt follows by DM"


def test_a_form_refused_when_its_work_is_done_tells_its_sender_what_they_wrote(
    bot: Bot, inbox: Inbox
) -> None:
    """Two forms sent at once both pass the rate limit in the request; the second is over it
    when its turn comes. Its sender hears why, with their text, and nothing else happens."""
    bot.configure(report_rate_limit="1/1h")
    first, second = open_report_form(bot, ALICE), open_report_form(bot, ALICE)
    assert bot.submit(ALICE, first, form_values("Kasse 2 in Erfurt ist aus")).body == ""
    text = "Kartenleser <!channel> in Erfurt & Jena defekt"
    assert bot.submit(ALICE, second, form_values(text)).body == ""
    assert inbox.drain() == 2
    assert report_count(bot) == 1
    assert {entry.status for entry in entries(bot)} == {InboxStatus.DONE}
    bot.drain()
    refusal = json.dumps(
        next(m for m in bot.slack.dm_messages(ALICE) if "could not be saved" in str(m["text"]))
    )
    assert "1 hour" in refusal
    assert "send this one again" in refusal and "kept" not in refusal, "nothing keeps it"
    assert "Kartenleser &lt;!channel&gt; in Erfurt &amp; Jena defekt" in refusal
    assert "<!channel>" not in refusal
    with Session(bot.engine) as session:
        sent = session.exec(
            select(OutboxMessage).where(OutboxMessage.purpose == "form_refused")
        ).one()
    assert ALICE not in sent.conversation + sent.payload, "sealed: the form may be anonymous"


def test_a_rate_limited_command_keeps_its_text_in_the_form_or_says_it_when_too_late(
    bot: Bot, inbox: Inbox
) -> None:
    """Over the rate limit, `/feedback <text>` opens the form with the text kept in it. Its
    trigger expires 3 s after the person sent the command: when the inbox comes to it later,
    the answer says why and quotes the text, to send again."""
    bot.configure(report_rate_limit="1/1h")
    for text in ("Kasse 2 in Erfurt ist aus", "Kasse 3 in Erfurt ist aus"):
        bot.dispatch(command_body(bot, ALICE, text), "application/x-www-form-urlencoded")
    assert inbox.drain() == 2
    assert report_count(bot) == 1
    form = bot.last_view()
    text_block = next(b for b in form["blocks"] if b.get("block_id") == "text")
    assert text_block["element"]["initial_value"] == "Kasse 3 in Erfurt ist aus"
    assert "kept until then" in json.dumps(form["blocks"]), "the form keeps it"

    bot.slack.trigger_lifetime = 0.0  # the worker comes to it after the trigger expired
    views = len(bot.slack.views)
    text = "Kasse 4 <!here> in Erfurt & Gotha ist aus"
    bot.dispatch(command_body(bot, ALICE, text), "application/x-www-form-urlencoded")
    assert inbox.drain() == 1
    assert {entry.status for entry in entries(bot)} == {InboxStatus.DONE}
    assert len(bot.slack.views) == views and report_count(bot) == 1
    bot.drain()
    answer = json.dumps(bot.slack.responses[-1])
    assert "send this one again in 1 hour" in answer and "kept" not in answer
    assert "Kasse 4 &lt;!here&gt; in Erfurt &amp; Gotha ist aus" in answer
    assert "<!here>" not in answer

    # Slack too busy to open forms (about 100 a minute): the same answer, nothing lost.
    bot.slack.trigger_lifetime = 3.0
    bot.slack.fail("views.open", times=1, status=429, retry_after=30)
    bot.dispatch(
        command_body(bot, ALICE, "Kasse 5 in Erfurt ist aus"), "application/x-www-form-urlencoded"
    )
    assert inbox.drain() == 1
    assert {entry.status for entry in entries(bot)} == {InboxStatus.DONE}
    bot.drain()
    answer = json.dumps(bot.slack.responses[-1])
    assert "send this one again in 1 hour" in answer and "Kasse 5 in Erfurt ist aus" in answer


def test_the_last_admin_removing_themselves_is_told_in_the_form(bot: Bot, inbox: Inbox) -> None:
    """The settings form checks what storing it would refuse while the form is still open;
    nothing reaches the inbox."""
    bot.deps.settings.feedbot_admins = []  # admins only from the settings, none bootstrapped
    bot.configure(admins=CAROL)
    bot.deps.config_cache.invalidate()
    view = open_group(bot, CAROL, "people")
    state = state_of(view, admins={"type": "multi_users_select", "selected_users": []})
    errors = json.loads(bot.submit(CAROL, view, state).body)["errors"]
    assert "last admin" in errors["admins"]
    assert [entry.kind for entry in entries(bot)] == [], "refused before it was stored"
    assert bot.bot_config().admins == [CAROL]


def test_an_entry_stored_before_bodies_were_sealed_is_still_handled(bot: Bot, inbox: Inbox) -> None:
    body = dict(parse_qsl(command_body(bot, ALICE, "Scanner in Suhl liest nichts")))
    with session_scope(bot.engine) as session:
        core_inbox.store(
            session,
            kind="command",
            dedupe_key="before-seals",
            body=json.dumps(body),
            now=bot.clock(),
        )
    assert inbox.drain() == 1
    assert report_count(bot) == 1


def test_a_leader_form_says_what_to_change_before_it_closes(bot: Bot, inbox: Inbox) -> None:
    """What the duplicate form can check by reading (an unknown report, the report itself) is
    answered in the form; only a submission that passes is stored."""
    for text in ("Kasse friert ein in Gera", "Kasse hängt in Gera beim Bezahlen"):
        view = open_report_form(bot, ALICE)
        assert bot.submit(ALICE, view, form_values(text)).status == 200
    assert inbox.drain() == 2
    bot.drain()
    duplicate = bot.report(2)

    def submit(reference: str) -> dict[str, object] | None:
        bot.press_card(LEADER, "triage_duplicate", duplicate)
        response = bot.submit(
            LEADER, bot.last_view(), {"reference": {"type": "plain_text_input", "value": reference}}
        )
        assert response.status == 200
        return json.loads(response.body) if response.body else None

    assert "FB-9999" in str(submit("FB-9999"))
    assert "itself" in str(submit("FB-1002"))
    stored = len(entries(bot))
    assert submit("FB-1001") is None
    assert len(entries(bot)) == stored + 1
    inbox.drain()
    assert bot.report(duplicate.id).status == "duplicate"


def test_taking_the_next_entry_reads_the_waiting_ones_not_the_handled_ones_kept(
    engine: Engine,
) -> None:
    """Handled entries are kept two days (`KEEP_FOR`), a hundred thousand after a busy one.
    Taking the next entry must not read them, nor every entry waiting behind it: PostgreSQL
    once walked the primary key from the oldest entry kept and read every handled one before
    the first waiting one, and SQLite sorted all the waiting ones (a backlog in an outage).
    (SQLite's work is counted in its virtual machine's steps, PostgreSQL's in the table rows
    its index scans fetch.)"""
    from sqlalchemy import delete, insert, text

    now = utcnow()
    table: Any = InboxEntry.__table__  # type: ignore[attr-defined]

    def inbox_with(handled: int) -> None:
        """`handled` entries handled earlier, then a hundred waiting (ids in that order)."""
        rows = [
            {
                "kind": "command",
                "dedupe_key": f"key-{n}",
                "body": "" if n < handled else "{}",
                "status": InboxStatus.DONE if n < handled else InboxStatus.PENDING,
                "received_at": now - timedelta(hours=1),
                "next_attempt_at": now - timedelta(hours=1),
                "handled_at": now - timedelta(hours=1) if n < handled else None,
                "attempts": 1,
            }
            for n in range(handled + 100)
        ]
        with Session(engine) as session:
            session.execute(delete(table))
            session.execute(insert(table), rows)
            session.commit()
            if engine.dialect.name != "sqlite":
                session.execute(text("ANALYZE inbox_entry"))
                session.commit()

    def take_reads() -> int:
        with Session(engine) as session:
            if engine.dialect.name == "sqlite":
                raw = session.connection().connection.driver_connection
                assert raw is not None
                steps = [0]

                def count() -> int:
                    steps[0] += 1
                    return 0

                raw.set_progress_handler(count, 1)
                taken = core_inbox.take_next(session, now=now)
                raw.set_progress_handler(None, 1)
                read = steps[0]
            else:
                fetched = text(
                    "SELECT coalesce(sum(idx_tup_fetch), 0) + coalesce(sum(seq_tup_read), 0)"
                    " FROM pg_stat_xact_user_tables WHERE relname = 'inbox_entry'"
                )
                before = int(session.execute(fetched).scalar_one())
                taken = core_inbox.take_next(session, now=now)
                read = int(session.execute(fetched).scalar_one()) - before
            assert taken is not None and taken.body == "{}", "a waiting entry was taken"
            session.rollback()
        return read

    inbox_with(0)
    alone = take_reads()
    inbox_with(5000)
    behind_handled = take_reads()
    print(json.dumps({"waiting_alone": alone, "behind_5000_handled": behind_handled}))
    # Reading the handled entries costs 5,000 rows on PostgreSQL; sorting the hundred
    # waiting ones, about 800 steps on SQLite. The first row of the due index costs a few.
    assert behind_handled < 300, "the handled entries, or every waiting one, were read"


def test_the_entry_due_the_longest_is_taken_first(engine: Engine) -> None:
    """Entries go in the order they became due: a new one at its arrival, a retried one
    when its pause ends, behind those that became due before it."""
    from sqlalchemy import insert

    now = utcnow()
    table: Any = InboxEntry.__table__  # type: ignore[attr-defined]
    due_at = {"retried": now - timedelta(seconds=5), "arrived": now - timedelta(seconds=30)}
    with Session(engine) as session:
        for key, at in due_at.items():  # the retried one first: the lower id
            session.execute(
                insert(table).values(
                    kind="command",
                    dedupe_key=key,
                    body=key,
                    status=InboxStatus.PENDING,
                    received_at=now - timedelta(minutes=1),
                    next_attempt_at=at,
                    attempts=0,
                )
            )
        session.commit()
    taken = []
    for _ in due_at:
        with Session(engine) as session:
            entry = core_inbox.take_next(session, now=now)
            assert entry is not None
            core_inbox.finish(session, entry, now=now)
            session.commit()
            taken.append(entry.body)
    assert taken == ["arrived", "retried"]


def test_an_idle_worker_process_ends_its_looks_with_commits(bot: Bot) -> None:
    """psycopg forgets every statement it prepared on a connection when a transaction there
    rolls back, so the server parses and plans them all again. An idle process looks for
    work several times a second (the inbox's workers, the webhook sender, the token's
    state, the configuration, a person's stored profile): those reads end with a commit,
    which leaves the prepared statements be, not with a rollback. So do the serving
    process's reads of the backlogs."""
    if bot.engine.dialect.name != "postgresql":
        pytest.skip("only psycopg forgets its prepared statements at a rollback")
    from psycopg.pq import TransactionStatus
    from sqlalchemy import event

    from feedbot.slack.work import Work

    ended: dict[str, list[str]] = {"commit": [], "rollback": []}

    def counted(how: str) -> Any:
        def count(connection: Any) -> None:
            status = connection.connection.dbapi_connection.info.transaction_status
            if status != TransactionStatus.IDLE:  # else psycopg sends nothing
                ended[how].append(threading.current_thread().name)

        return count

    for how in ended:
        event.listen(bot.engine, how, counted(how))
    work = Work.assemble(bot.deps, only_work=True)
    bot.app = build_app(bot.settings, bot.engine, deps=bot.deps, inbox=work.inbox)
    work.start()
    try:
        time.sleep(2.5)
        bot.deps.people.profile(ALICE)
        # And the serving process's: the depth it watches, the backlogs /metrics shows.
        work.inbox.check_depth()
        list(InboxDepth(bot.engine).collect())
        list(OutboxBacklog(bot.engine).collect())
    finally:
        work.stop()
    assert ended["rollback"] == []
    assert {"inbox-0", "webhook-sender", "MainThread"} <= set(ended["commit"])
