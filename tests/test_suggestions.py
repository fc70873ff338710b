"""Similar reports and earlier solutions are shown to the reporter when they file."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from feedbot.core import reports, similar_reports, similarity
from feedbot.core.config import RuntimeConfig
from feedbot.core.reports import ReportDraft
from feedbot.models import ReportSource, ReportStatus, utcnow
from tests.harness import ALICE, BOB, CAROL, IDENTITIES, INTAKE, LEADER, LEADER_2, Bot
from tests.test_reporting import form_values

RESOLVED = ReportStatus.RESOLVED


def test_terms_fold_case_stop_words_and_word_endings() -> None:
    assert similarity.terms("Der Drucker druckt nicht, die Drucker sind offline!") == [
        "drucke",
        "druckt",
        "offlin",
    ]
    assert similarity.terms("Printers print nothing; PRINTER offline") == [
        "printe",
        "print",
        "nothin",
        "offlin",
    ]
    assert similarity.terms("🙂 42 ok") == []


UNLIMITED = RuntimeConfig(report_rate_limit="0")


@pytest.fixture
def statistics_by_hand(engine: Engine) -> Iterator[None]:
    """PostgreSQL's statistics as the test takes them (`ANALYZE`), not as autovacuum would.
    These tests count what a plan reads, and the plan follows the statistics: autovacuum
    analysing a burst midway would make "statistics older than the burst" untrue."""
    from sqlalchemy import text

    postgresql = engine.dialect.name == "postgresql"
    tables = ("report", "report_term")
    if postgresql:
        with engine.begin() as connection:
            for table in tables:
                connection.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = off)"))
    yield
    if postgresql:
        with engine.begin() as connection:
            for table in tables:
                connection.execute(text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))


def add_report(
    session: Session,
    text: str,
    *,
    at: datetime,
    category: str | None = None,
    status: ReportStatus = ReportStatus.OPEN,
) -> int:
    """A report by Alice, filed at `at` and set to `status`; its id."""
    report = reports.create_report(
        session,
        reporter_id=ALICE,
        draft=ReportDraft(text=text, source=ReportSource.MODAL, category=category),
        config=UNLIMITED,
        now=at,
        identities=IDENTITIES,
    )
    report.status = status
    session.add(report)
    session.flush()
    assert report.id is not None
    return report.id


def test_similar_reports_prefer_the_same_category_and_skip_closed_ones(engine: Engine) -> None:
    now = utcnow()
    with Session(engine) as session:

        def add(text: str, category: str, status: ReportStatus = ReportStatus.OPEN) -> int:
            return add_report(session, text, at=now, category=category, status=status)

        printer_devices = add("Printer in shop Leipzig jams on every receipt", "Devices & hardware")
        printer_it = add("Receipt printer jams in shop Halle", "IT systems")
        add("Printer jams on receipts, fixed", "Devices & hardware", ReportStatus.RESOLVED)
        add("Tariff MagentaMobil charged twice", "Billing & tariffs")
        session.commit()
        matches = similar_reports.similar_reports(
            session, text="The receipt printer jams again", category="Devices & hardware"
        )
    assert [m.report.id for m in matches] == [printer_devices, printer_it]
    assert all(0 < m.score <= 1 for m in matches)


def test_grouping_fetches_the_suggestions_in_its_own_statement_and_finds_the_same(
    engine: Engine,
) -> None:
    """Filing looks its text up for grouping (open reports of the last minutes) and then for
    the receipt (open and resolved ones of any age): one lookup statement serves both, and
    each finds what it finds alone."""
    now = utcnow()
    since = now - timedelta(minutes=30)
    with Session(engine) as session:

        def add(text: str, age: timedelta, status: ReportStatus = ReportStatus.OPEN) -> int:
            return add_report(session, text, at=now - age, status=status)

        for minutes in range(40):  # one wording, in and before the window
            add("Kartenterminal Filiale Gotha lehnt Girocard ab", timedelta(minutes=minutes))
        add("Kartenterminal Gotha lehnt Girocard ab, getauscht", timedelta(days=3), RESOLVED)
        add("Girocard Terminal Gotha Fehler", timedelta(minutes=2), ReportStatus.DUPLICATE)
        new = add("Kartenterminal in Gotha lehnt jede Girocard ab", timedelta(0))
        session.commit()
    text = "Kartenterminal in Gotha lehnt jede Girocard ab"
    burst = {
        "text": text,
        "category": None,
        "exclude_id": new,
        "limit": 50,
        "threshold": 0.3,
        "candidates": 100,
        "created_since": since,
    }
    receipt = {
        "text": text,
        "category": None,
        "exclude_id": new,
        "limit": 12,
        "statuses": similar_reports.SUGGESTIONS.statuses,
    }
    with Session(engine) as session:
        burst_alone = similar_reports.alike_reports(session, **burst)
    with Session(engine) as session:
        receipt_alone = similar_reports.alike_reports(session, **receipt)
    statements: list[str] = []
    with Session(engine) as session:
        listen = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listen)
        try:
            together = similar_reports.alike_reports(
                session, **burst, alongside=(similar_reports.SUGGESTIONS,)
            )
            after = similar_reports.alike_reports(session, **receipt)
        finally:
            event.remove(engine, "before_cursor_execute", listen)
    assert together == burst_alone and len(burst_alone) == 31  # minutes 0 to 30, not older
    with Session(engine) as session:
        found_reports = reports.get_reports(session, [found.report_id for found in together])
    assert len(found_reports) == 31
    assert all(report.created_at >= since for report in found_reports.values())
    assert after == receipt_alone and len(receipt_alone) == 12
    assert any(found.status == RESOLVED for found in receipt_alone)
    lookups = [sql for sql in statements if "sum(CASE" in sql]
    assert len(lookups) == 1, statements


def test_a_lookup_answers_for_a_report_stored_after_it_only_if_made_for_it(
    engine: Engine,
) -> None:
    """Filing places a report before storing it: that lookup could not find the report, so
    the receipt's lookup that excludes it is answered from it. A lookup made before another
    report was stored is not: it would miss that report."""
    now = utcnow()
    text = "Kartenterminal in Gotha lehnt jede Girocard ab"
    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    with Session(engine) as session:
        add_report(session, text, at=now - timedelta(minutes=5))
        session.commit()

        def lookups_excluding(report_id: int) -> tuple[list[int], int]:
            statements.clear()
            event.listen(engine, "before_cursor_execute", listen)
            try:
                found = similar_reports.alike_reports(
                    session, text=text, category=None, exclude_id=report_id, limit=12
                )
            finally:
                event.remove(engine, "before_cursor_execute", listen)
            return [alike.report_id for alike in found], sum("sum(CASE" in s for s in statements)

        earlier = similar_reports.last_lookup(session)
        first = similar_reports.alike_reports(session, text=text, category=None, limit=12)
        placed = add_report(session, text, at=now)
        similar_reports.stored_after_lookup(session, placed, earlier=earlier)
        found, looked_up = lookups_excluding(placed)
        assert (found, looked_up) == ([alike.report_id for alike in first], 0)

        similar_reports.alike_reports(session, text=text, category=None, limit=12)
        missed = add_report(session, text, at=now)  # stored after that lookup
        earlier = similar_reports.last_lookup(session)
        later = add_report(session, text, at=now)  # and this one placed without a lookup
        similar_reports.stored_after_lookup(session, later, earlier=earlier)
        found, looked_up = lookups_excluding(later)
        assert looked_up == 1 and missed in found


@dataclass(frozen=True)
class Stored:
    report_id: int
    terms: frozenset[str]
    status: ReportStatus
    created_at: datetime


def worked_out(
    stored: list[Stored], text: str, pool: similar_reports.Pool, exclude_id: int | None = None
) -> list[tuple[int, float]]:
    """What a lookup of `text` in `pool` must find (threshold 0, any category), worked out
    in Python over every report but `exclude_id`: its rarest terms (`probe_terms`), the
    pool's reports that share the most of them (then the newest), scored by the Jaccard
    index."""
    stored = [other for other in stored if other.report_id != exclude_id]
    wanted = frozenset(similarity.terms(text))
    counts = {term: sum(term in other.terms for other in stored) for term in wanted}
    probe = set(similar_reports.probe_terms(counts))
    in_pool = [
        other
        for other in stored
        if other.status in pool.statuses
        and (pool.created_since is None or other.created_at >= pool.created_since)
        and other.terms & probe
    ]
    in_pool.sort(key=lambda other: (-len(other.terms & probe), -other.report_id))
    scored = [
        (other.report_id, len(other.terms & wanted) / len(other.terms | wanted))
        for other in in_pool[: pool.candidates]
    ]
    return sorted(scored, key=lambda found: (-found[1], -found[0]))


def test_a_lookup_answered_from_an_earlier_one_finds_what_it_finds_alone(engine: Engine) -> None:
    """Pools of a few candidates each over mixed statuses and ages, so that each pool's cut
    matters: each lookup finds what is worked out in Python over every report, and whichever
    pool looked first, every later lookup finds what it finds alone. Half of the texts leave
    a report out, as filing leaves out the report being filed."""
    rng = random.Random(12)
    now = utcnow()
    words = [
        "Kasse",
        "Drucker",
        "Terminal",
        "Gotha",
        "Leipzig",
        "Girocard",
        "Netz",
        "Router",
        "Tarif",
        "Rechnung",
    ]
    stored: list[Stored] = []
    with Session(engine) as session:
        for number in range(120):
            text = " ".join(rng.sample(words, rng.randint(2, 6))) + f" Vorgang{number % 7}"
            at = now - timedelta(minutes=rng.randint(0, 90))
            status = rng.choice(list(ReportStatus))
            report_id = add_report(session, text, at=at, status=status)
            stored.append(Stored(report_id, frozenset(similarity.terms(text)), status, at))
        session.commit()
    pools = [
        similar_reports.Pool(statuses=similar_reports.OPEN_STATUSES, candidates=4),
        similar_reports.Pool(candidates=3, created_since=now - timedelta(minutes=30)),
        similar_reports.Pool(statuses=(ReportStatus.RESOLVED,), candidates=5),
        similar_reports.SUGGESTIONS,
    ]

    def look(session: Session, text: str, pool: similar_reports.Pool, **more: Any) -> Any:
        return similar_reports.alike_reports(
            session,
            text=text,
            category=None,
            statuses=pool.statuses,
            candidates=pool.candidates,
            created_since=pool.created_since,
            limit=50,
            threshold=0.0,
            **more,
        )

    compared = 0
    for round_number in range(25):
        text = " ".join(rng.sample(words, 4)) + f" Vorgang{rng.randint(0, 6)}"
        left_out = rng.choice(stored).report_id if round_number % 2 else None
        alone = {}
        for pool in pools:
            with Session(engine) as session:
                alone[pool] = look(session, text, pool, exclude_id=left_out)
            assert [(a.report_id, a.score) for a in alone[pool]] == worked_out(
                stored, text, pool, left_out
            )
        for first in pools:
            with Session(engine) as session:
                others = [pool for pool in pools if pool != first]
                found = look(session, text, first, alongside=others, exclude_id=left_out)
                assert found == alone[first]
                for pool in others:
                    found = look(session, text, pool, exclude_id=left_out)
                    assert found == alone[pool], (text, first, pool)
                    compared += 1
    assert compared == 25 * 4 * 3
    assert sum(len(found) for found in alone.values()) > 0


def test_reports_left_out_by_status_do_not_crowd_out_the_candidates_behind_them(
    engine: Engine,
) -> None:
    """A pool of any age reads the status of only the first-ranked reports: as many as its
    candidates, plus every report in a status it leaves out. Forty duplicates that share
    more words than any open report rank first; the suggestions still find the open ones."""
    now = utcnow()
    text = "Etikettendrucker Zebra Filiale Jena druckt leer"
    stored: list[Stored] = []
    with Session(engine) as session:
        wordings = [(text, ReportStatus.DUPLICATE)] * 40 + [
            ("Etikettendrucker Zebra druckt leer", ReportStatus.OPEN),
            ("Zebra Etikettendrucker Jena defekt", ReportStatus.RESOLVED),
            ("Etikettendrucker druckt leer seit Montag", ReportStatus.ACKNOWLEDGED),
            ("Drucker Jena leer", ReportStatus.OPEN),
        ]
        for number, (wording, status) in enumerate(wordings):
            at = now - timedelta(minutes=number)
            report_id = add_report(session, wording, at=at, status=status)
            stored.append(Stored(report_id, frozenset(similarity.terms(wording)), status, at))
        session.commit()
    pool = similar_reports.Pool(statuses=similar_reports.SUGGESTIONS.statuses, candidates=3)
    with Session(engine) as session:
        found = similar_reports.alike_reports(
            session,
            text=text,
            category=None,
            statuses=pool.statuses,
            candidates=pool.candidates,
            limit=50,
            threshold=0.0,
        )
    expected = worked_out(stored, text, pool)
    assert [(a.report_id, a.score) for a in found] == expected
    assert len(expected) == 3 and all(a.status != ReportStatus.DUPLICATE for a in found)


def test_the_receipts_pool_reads_the_status_of_only_as_many_reports_as_it_keeps(
    engine: Engine,
) -> None:
    """The receipt's suggestions leave out only duplicates, so they read the status of the
    first thirty ranked reports (plus one per duplicate), not of all fifteen hundred that
    share the text's rare words: SQLite grouped them all and then read each one's row."""
    from sqlalchemy import delete

    from feedbot.models import Report, ReportTerm

    if engine.dialect.name != "sqlite":
        pytest.skip(
            "PostgreSQL joins the ranked reports one by one and stops when the pool is "
            "full, bound or not"
        )
    now = utcnow()
    wording = "Etikettendrucker Zebra Filiale Jena druckt leer"
    with Session(engine) as session:
        session.execute(delete(ReportTerm))
        session.execute(delete(Report))
        rows = _other_reports(1500, at=lambda n: now - timedelta(days=1 + n % 300))
        for n, row in enumerate(rows):
            row["text"] = f"Etikettendrucker Zebra {n % 60} druckt leer, Rolle {n}"
        _insert(session, rows)
        session.commit()

    def look(statuses: tuple[ReportStatus, ...]) -> int:
        work, found = _reads(
            engine,
            lambda session: similar_reports.alike_reports(
                session, text=wording, category=None, statuses=statuses, threshold=0.0
            ),
        )
        assert len(found) == 3
        return work

    look(similar_reports.SUGGESTIONS.statuses)  # the words' large counts are kept from now on
    bounded = look(similar_reports.SUGGESTIONS.statuses)
    every_status = look(similar_reports.OPEN_STATUSES)  # leaves out resolved ones: no bound
    print(json.dumps({"suggestions": bounded, "open_only": every_status}))
    assert bounded < every_status - 1500 * 5, "the pool read the status of every ranked report"


@pytest.mark.usefixtures("statistics_by_hand")
def test_a_lookup_reads_the_same_however_many_resolved_reports_its_pool_leaves_out(
    engine: Engine,
) -> None:
    """A pool of any age that leaves out only rare statuses (the receipt's suggestions:
    duplicates) counts the reports in them, to read the status of fewer ranked reports. A
    pool that leaves out resolved reports, most of an old table, must not count those in
    every lookup: three thousand resolved reports about something else cost it nothing."""
    from sqlalchemy import delete, text

    from feedbot.models import Report, ReportTerm

    now = utcnow()
    wording = "Etikettendrucker Zebra Filiale Jena druckt leer"

    def history(resolved: int) -> None:
        with Session(engine) as session:
            session.execute(delete(ReportTerm))
            session.execute(delete(Report))
            rows = _other_reports(resolved, at=lambda n: now - timedelta(days=1 + n % 300))
            for row in rows:
                row["status"] = ReportStatus.RESOLVED
            _insert(session, rows)
            for hours in range(5):
                add_report(session, f"{wording} ({hours})", at=now - timedelta(hours=hours))
            session.commit()
            if engine.dialect.name != "sqlite":
                session.execute(text("ANALYZE report, report_term"))
                session.commit()

    def open_ones(session: Session) -> list[Any]:
        return similar_reports.alike_reports(
            session, text=wording, category=None, limit=50, threshold=0.0
        )

    history(0)
    alone, found = _reads(engine, open_ones)
    assert len(found) == 5
    history(3000)
    after, found = _reads(engine, open_ones)
    assert len(found) == 5
    print(json.dumps({"read_alone": alone, "read_after_3000_resolved": after}))
    assert after < alone * 1.5 + 50


def test_the_rarest_words_look_for_candidates_within_a_budget_of_rows() -> None:
    budget = similar_reports.PROBE_ROWS
    counts = {"shop": budget, "kunde": budget - 10, "drucke": 3, "leipzi": 40, "papier": 12}
    assert similar_reports.probe_terms(counts) == ["drucke", "papier", "leipzi"]
    few = {"shop": budget, "kunde": budget, "drucke": 3}
    assert similar_reports.probe_terms(few) == ["drucke", "kunde", "shop"], (
        "a text of common words still finds candidates"
    )
    assert similar_reports.probe_terms({"neuwor": 0, "drucke": 3}) == ["drucke"], (
        "a word no other report has finds nothing"
    )


def test_words_only_the_new_report_has_do_not_crowd_out_the_shared_ones(engine: Engine) -> None:
    """The new report's own terms are indexed before the lookup; its many words of its own
    must not take the place of the six it shares with an earlier report (score 6/21)."""
    config = RuntimeConfig()
    now = utcnow()
    with Session(engine) as session:

        def add(text: str, reporter: str) -> int:
            report = reports.create_report(
                session,
                reporter_id=reporter,
                draft=ReportDraft(text=text, source=ReportSource.MODAL),
                config=config,
                now=now,
                identities=IDENTITIES,
            )
            assert report.id is not None
            return report.id

        earlier = add("Kassendrucker Quittungen Filiale Gotha klemmt Papierstau", ALICE)
        words = (
            "Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag Januar Februar "
            "Maerz April Juni Juli August Oktober"
        )
        text = f"Kassendrucker Quittungen Filiale Gotha klemmt Papierstau {words}"
        new = add(text, BOB)
        session.commit()
        assert len(similarity.terms(text)) == 21
        matches = similar_reports.similar_reports(
            session,
            text=text,
            category=None,
            exclude_id=new,
            frequencies=similar_reports.TermFrequencies(),
        )
    assert [m.report.id for m in matches] == [earlier]
    assert round(matches[0].score, 3) == round(6 / 21, 3)


def test_the_match_is_found_among_many_reports_sharing_common_words(engine: Engine) -> None:
    """Three hundred reports share the everyday words of the new one; the one that shares its
    distinctive words is found, and its score counts the everyday words too."""
    config = RuntimeConfig()
    now = utcnow()
    with Session(engine) as session:
        for number in range(300):
            reports.create_report(
                session,
                reporter_id=f"UFIELD{number:04d}",
                draft=ReportDraft(
                    text=f"Kunde im Shop wartet, Ticket offen, Vorgang {number} Hotline",
                    source=ReportSource.MODAL,
                ),
                config=config,
                now=now,
                identities=IDENTITIES,
            )
        twin = reports.create_report(
            session,
            reporter_id=BOB,
            draft=ReportDraft(
                text="Kunde im Shop wartet: Kassendrucker Quittungspapier klemmt",
                source=ReportSource.MODAL,
            ),
            config=config,
            now=now,
            identities=IDENTITIES,
        )
        session.commit()
        matches = similar_reports.similar_reports(
            session,
            text="Kassendrucker klemmt, Quittungspapier, Kunde wartet im Shop",
            category=None,
            frequencies=similar_reports.TermFrequencies(),
        )
    assert matches[0].report.id == twin.id
    assert matches[0].score == 1.0


def test_the_receipt_suggests_similar_reports_and_me_too_instead_merges(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "Card terminal in shop Leipzig rejects every girocard payment")
    first = bot.report()
    bot.command(CAROL, "Coverage problem in Rostock harbour")
    dm = bot.slack.dm_channel(BOB)
    bot.message(
        BOB,
        "Girocard payment rejected at the card terminal, shop Leipzig",
        channel=dm,
        channel_type="im",
    )
    second = bot.report()
    bot.drain()
    receipt = next(m for m in bot.slack.messages(dm) if "FB-1003" in m["text"])
    blocks = json.dumps(receipt["blocks"], ensure_ascii=False)
    assert "FB-1001" in blocks and "FB-1002" not in blocks
    button = next(
        b["accessory"]
        for b in receipt["blocks"]
        if b.get("accessory", {}).get("action_id") == "report_me_too_instead"
    )
    assert button["value"] == f"{second.id}:{first.id}"

    bot.press(BOB, "report_me_too_instead", button["value"], channel=dm)
    bot.drain()
    assert bot.report(second.id).status == "duplicate"
    assert bot.report(first.id).me_too_count == 1
    assert any(
        "statt einer neuen Meldung" in e["text"].lower() or "Statt einer neuen" in e["text"]
        for e in bot.slack.ephemerals
    )
    assert "The reporter merged it into FB-1001." in bot.thread(bot.report(second.id))
    assert "FB-1003 was merged into this report." in bot.thread(first)

    bot.press(CAROL, "report_me_too_instead", button["value"], channel=dm)
    assert bot.report(first.id).me_too_count == 1, "only the reporter can merge their report"


def test_an_earlier_solution_is_offered(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "Activation portal shows error 503 for eSIM orders")
    old = bot.report()
    bot.drain()
    bot.press_card(LEADER, "triage_resolve", old)
    bot.submit(
        LEADER,
        bot.last_view(),
        {
            "note": {
                "type": "plain_text_input",
                "value": "Clear the browser cache, then order again.",
            }
        },
    )
    bot.drain()
    answer = json.loads(
        bot.command(CAROL, "eSIM orders fail in the activation portal with 503").body
    )
    assert "Clear the browser cache" in json.dumps(answer["blocks"])
    # By DM from someone without a recent report (Carol's DM would ask whether it is about
    # the report she just filed).
    dm = bot.slack.dm_channel(LEADER_2)
    bot.message(LEADER_2, "Activation portal: eSIM error 503 again", channel=dm, channel_type="im")
    bot.drain()
    text = json.dumps(
        [m["blocks"] for m in bot.slack.messages(dm) if m.get("blocks")], ensure_ascii=False
    )
    assert "Colleagues solved a similar problem before (FB-1001)" in text
    assert "Clear the browser cache" in text


def receipt_blocks(bot: Bot, user: str) -> str:
    """Everything `user` was sent in their DM, as one string to look through."""
    bot.drain()
    return json.dumps([m["blocks"] for m in bot.slack.dm_messages(user)], ensure_ascii=False)


def test_a_colleague_sees_only_what_they_could_already_read(bot: Bot) -> None:
    """Alice posts in the intake channel (Carol is in it, Bob is not) and Dave files by DM.
    A suggestion quotes a report only to someone who could read it where it was posted;
    everyone else sees its reference, category and how many it affects, and may say me too."""
    bot.setup_team()
    bot.slack.add_channel(INTAKE, name="field-problems", members=[ALICE, CAROL])
    bot.message(ALICE, "Card terminal in Leipzig rejects every girocard payment, since 8:00")
    posted = bot.report()
    dave = "UDAVE0001"
    bot.slack.add_user(dave, name="dave")
    bot.message(
        dave,
        "Girocard terminal in shop Leipzig rejects payments, customers leave",
        channel=bot.slack.dm_channel(dave),
        channel_type="im",
    )
    private = bot.report()
    assert posted.source_channel == INTAKE and private.source == "direct_message"

    answer = json.loads(
        bot.command(CAROL, "Girocard payments rejected at the Leipzig terminal").body
    )
    shown = json.dumps(answer["blocks"], ensure_ascii=False)
    assert "since 8:00" in shown, "Carol is in the intake channel: she read Alice's post there"
    assert "customers leave" not in shown, "Dave's DM was his alone"
    assert posted.reference in shown and private.reference in shown

    answer = json.loads(bot.command(BOB, "Girocard payments rejected at the Leipzig terminal").body)
    shown = json.dumps(answer["blocks"], ensure_ascii=False)
    assert "since 8:00" not in shown and "customers leave" not in shown
    assert posted.reference in shown and "Betroffene" not in shown
    assert (
        "2 Kolleginnen und Kollegen betroffen" not in shown
        and "1 Kollegin oder Kollege betroffen" in shown
    )
    assert "report_me_too_instead" in shown, "Bob may still count himself in"


def test_anonymous_reports_are_never_quoted_and_confidential_ones_never_suggested(
    bot: Bot,
) -> None:
    bot.setup_team()
    bot.configure(confidential_categories="Customer experience")
    bot.slack.add_channel(INTAKE, name="field-problems", members=[ALICE, CAROL])
    bot.command(ALICE, "")
    anonymously = {"type": "checkboxes", "selected_options": [{"value": "yes"}]}
    bot.submit(
        ALICE,
        bot.last_view(),
        form_values("Shift lead shouts at trainees at the Halle counter", anonymous=anonymously),
    )
    anonymous = bot.report()
    bot.command(ALICE, "")
    bot.submit(
        ALICE,
        bot.last_view(),
        form_values(
            "Shift lead at the Halle counter shouts at customers",
            category={"type": "static_select", "selected_option": {"value": "Customer experience"}},
        ),
    )
    confidential = bot.report()
    answer = json.loads(bot.command(CAROL, "The Halle counter shift lead shouts at trainees").body)
    shown = json.dumps(answer["blocks"], ensure_ascii=False)
    assert anonymous.reference in shown and "shouts at trainees" not in shown.split("\\n", 1)[-1]
    assert "Shift lead shouts" not in shown, "an anonymous report's text is for leaders only"
    assert confidential.reference not in shown, "a confidential report is never suggested"


def test_a_solution_is_offered_only_when_the_leader_shared_it(bot: Bot) -> None:
    bot.setup_team()
    bot.configure(confidential_categories="IT systems")
    kept, shared_one, secret = (
        "Activation portal shows error 503 for eSIM orders",
        "Roaming option is billed twice in the portal",
        "Admin password for the shop PCs leaked in a chat",
    )
    notes = {}
    for user, text_, category, share in (
        (ALICE, kept, "Devices & hardware", False),
        (BOB, shared_one, "Billing & tariffs", True),
        (CAROL, secret, "IT systems", True),
    ):
        bot.command(user, "")
        bot.submit(
            user,
            bot.last_view(),
            form_values(
                text_, category={"type": "static_select", "selected_option": {"value": category}}
            ),
        )
        report = bot.report()
        bot.drain()
        bot.press_card(LEADER, "triage_resolve", report)
        view = bot.last_view()
        offered = [b["block_id"] for b in view["blocks"] if b["type"] == "input"]
        if category == "IT systems":
            assert offered == ["note"], "no offer to share a confidential solution"
        else:
            assert offered == ["note", "share"]
        note = f"Solution for {report.reference}: restart the portal session"
        notes[text_] = note
        values: dict[str, object] = {"note": {"value": note}}
        if not share and "share" in offered:
            values["share"] = {"selected_options": []}
        bot.submit(LEADER, view, values)
        bot.drain()
    for text_, wanted in ((kept, False), (shared_one, True), (secret, False)):
        answer = json.loads(bot.command(LEADER_2, text_).body)
        assert (notes[text_] in json.dumps(answer["blocks"])) is wanted, text_


def test_filing_counts_its_words_once_and_the_next_transaction_counts_again(
    engine: Engine,
) -> None:
    """Grouping and the receipt look the same text up in one transaction: the second lookup
    reuses the first one's word counts. A later transaction counts afresh, so a report filed
    in between is seen."""
    config = RuntimeConfig()
    now = utcnow()
    counted: list[str] = []

    def count_queries(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM report_term" in statement and "GROUP BY report_term.term" in statement:
            counted.append(statement)

    def add(session: Session, text: str, reporter: str) -> int:
        report = reports.create_report(
            session,
            reporter_id=reporter,
            draft=ReportDraft(text=text, source=ReportSource.MODAL),
            config=config,
            now=now,
            identities=IDENTITIES,
        )
        assert report.id is not None
        return report.id

    def look_up(session: Session, text: str, exclude: int) -> list[int | None]:
        found = similar_reports.similar_reports(
            session,
            text=text,
            category=None,
            exclude_id=exclude,
            frequencies=similar_reports.TermFrequencies(),
        )
        return [match.report.id for match in found]

    text = "Kartenterminal Filiale Gotha startet neu, Zahlung bricht ab"
    event.listen(engine, "before_cursor_execute", count_queries)
    try:
        with Session(engine) as session:
            first = add(session, text, ALICE)
            session.commit()
            new = add(session, text, BOB)
            assert look_up(session, text, new) == [first]
            assert look_up(session, text, new) == [first]
            assert len(counted) == 1, "the second lookup reuses the counts"
            session.commit()
            third = add(session, text, CAROL)
            session.commit()
            assert look_up(session, text, new) == [third, first]
            assert len(counted) == 2, "a new transaction counts again"
    finally:
        event.remove(engine, "before_cursor_execute", count_queries)


def test_the_word_counts_kept_count_the_reports_filed_since(engine: Engine) -> None:
    """A common word's count is kept for minutes, while in an outage thousands of reports
    a minute may contain it. Each report filed is counted in the counts kept, so that the
    lookups choose their words by what the index holds, and read no more than their budget
    of rows."""
    from feedbot.core import incidents

    frequencies = similar_reports.FREQUENCIES
    config = RuntimeConfig()
    now = utcnow()
    common = "Drucker"  # in every report of `_other_reports`
    kept = similar_reports.CACHED_FROM + 20
    with Session(engine) as session:
        _insert(session, _other_reports(kept, at=lambda n: now - timedelta(days=1, minutes=n)))
        session.commit()
        (term,) = similarity.terms(common)
        assert frequencies.counts(session, [term]) == {term: kept}
    for n in range(5):
        with Session(engine) as session:
            report = reports.new_report(
                session,
                reporter_id=ALICE,
                draft=ReportDraft(text=f"Drucker in Filiale {n} klemmt", source=ReportSource.MODAL),
                config=config,
                now=now,
                identities=IDENTITIES,
            )
            incidents.store_and_place(session, report=report, config=config, now=now)
            session.commit()
    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    try:
        with Session(engine) as session:
            assert frequencies.counts(session, [term]) == {term: kept + 5}
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert statements == [], "the count was kept, not taken again"


def _reads(
    engine: Engine,
    lookup: Callable[[Session], list[Any]],
    tables: tuple[str, ...] = ("report", "report_term"),
) -> tuple[int, list[Any]]:
    """What `lookup` reads, and what it found: SQLite's virtual machine steps, PostgreSQL's
    rows fetched from `tables`."""
    from sqlalchemy import bindparam, text

    sqlite = engine.dialect.name == "sqlite"
    fetched = text(
        "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)"
        " FROM pg_stat_xact_user_tables WHERE relname IN :tables"
    ).bindparams(bindparam("tables", value=list(tables), expanding=True))
    with Session(engine) as session:
        steps = [0]
        before = 0
        if sqlite:
            raw = session.connection().connection.driver_connection
            assert raw is not None

            def count() -> int:
                steps[0] += 1
                return 0

            raw.set_progress_handler(count, 1)
        else:
            before = int(session.execute(fetched).scalar_one())
        found = lookup(session)
        if sqlite:
            raw.set_progress_handler(None, 1)
            return steps[0], found
        return int(session.execute(fetched).scalar_one()) - before, found


def _window_reads(
    engine: Engine,
    wording: str,
    since: datetime,
    *,
    expected: int,
    alongside: tuple[similar_reports.Pool, ...] = (),
    tables: tuple[str, ...] = ("report", "report_term"),
) -> int:
    """What one grouping lookup of `wording` among the reports since `since` (and the
    lookups `alongside`, in the same statement) reads (see `_reads`). It must find
    `expected` reports."""
    work, found = _reads(
        engine, lambda session: _grouping_lookup(session, wording, since, alongside), tables
    )
    assert len(found) == expected
    return work


def _grouping_lookup(
    session: Session,
    wording: str,
    since: datetime,
    alongside: tuple[similar_reports.Pool, ...] = (),
) -> list[Any]:
    """Grouping's lookup of `wording` among the open reports since `since`, as filing makes
    it (`incidents._find_place`), with the lookups `alongside` in the same statement."""
    return similar_reports.alike_reports(
        session,
        text=wording,
        category=None,
        limit=50,
        threshold=0.3,
        candidates=100,
        created_since=since,
        alongside=alongside,
    )


def _burst(count: int, now: datetime) -> list[dict[str, Any]]:
    """`count` alike reports of the last ten minutes about a shop's scales, for bulk insert."""
    rows = _other_reports(count, at=lambda n: now - timedelta(seconds=n % 600))
    for n, row in enumerate(rows):
        row["text"] = f"Kassenwaage Filiale Suhl {n % 7} wiegt falsch"
    return rows


def _term_scans(engine: Engine, wording: str, since: datetime, *, expected: int) -> int:
    """The index scans of `report_term` PostgreSQL begins for one grouping lookup of
    `wording` among the reports since `since`, which must find `expected`: trying each
    report of the window for the text's words is a scan per report."""
    from sqlalchemy import text

    scans = text(
        "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_xact_user_tables"
        " WHERE relname = 'report_term'"
    )
    with Session(engine) as session:
        before = int(session.execute(scans).scalar_one())
        found = _grouping_lookup(session, wording, since)
        assert len(found) == expected
        return int(session.execute(scans).scalar_one()) - before


def _other_reports(count: int, *, at: Callable[[int], datetime]) -> list[dict[str, Any]]:
    """`count` open reports about a printer, the n-th filed at `at(n)`, for bulk insert."""
    return [
        {
            "created_at": at(n),
            "updated_at": at(n),
            "source": ReportSource.MODAL,
            "reporter_id": ALICE,
            "anonymous": False,
            "text": f"Drucker {n} im Lager offline",
            "category": "IT systems",
            "location": "Lager",
            "urgency": "normal",
            "callback_requested": False,
            "status": ReportStatus.OPEN,
            "me_too_count": 0,
        }
        for n in range(count)
    ]


def _insert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Store reports in bulk, with their search terms."""
    from sqlalchemy import insert

    from feedbot.models import Report, ReportTerm

    if not rows:
        return
    report_ids = session.execute(
        insert(Report).returning(Report.id, sort_by_parameter_order=True), rows
    )
    terms = [
        {"report_id": report_id, "term": term}
        for report_id, row in zip(report_ids.scalars(), rows, strict=True)
        for term in similarity.terms(row["text"])
    ]
    session.execute(insert(ReportTerm), terms)


@pytest.mark.usefixtures("statistics_by_hand")
def test_a_lookup_in_the_last_minutes_reads_the_same_however_long_the_history(
    engine: Engine,
) -> None:
    """Grouping looks among the reports of the last minutes: what it reads must not grow
    with the reports filed before them (the window's first report id was once found by
    walking the table from its oldest report on, every lookup). Nor when the receipt's
    suggestions are looked up in the same statement (PostgreSQL once hashed the whole
    report table to join the candidates' rows)."""
    from sqlalchemy import delete, text

    from feedbot.models import Report, ReportTerm

    now = utcnow()
    wording = "Kassenwaage in Filiale Suhl wiegt falsch"

    def history(older: int) -> None:
        """`older` reports of last year, then five of the last minutes (ids in that order)."""
        with Session(engine) as session:
            session.execute(delete(ReportTerm))
            session.execute(delete(Report))
            _insert(
                session, _other_reports(older, at=lambda n: now - timedelta(days=365 - n % 300))
            )
            for minutes in range(5):
                add_report(session, f"{wording} ({minutes})", at=now - timedelta(minutes=minutes))
            session.commit()
            if engine.dialect.name != "sqlite":
                session.execute(text("ANALYZE report, report_term"))
                session.commit()

    since = now - timedelta(minutes=30)
    both = (similar_reports.SUGGESTIONS,)
    history(0)
    alone = _window_reads(engine, wording, since, expected=5)
    alone_both = _window_reads(engine, wording, since, expected=5, alongside=both)
    history(3000)
    after = _window_reads(engine, wording, since, expected=5)
    after_both = _window_reads(engine, wording, since, expected=5, alongside=both)
    print(json.dumps({"alone": [alone, alone_both], "after_3000_older": [after, after_both]}))
    assert after < alone * 1.5 + 50
    assert after_both < alone_both * 1.5 + 50


@pytest.mark.usefixtures("statistics_by_hand")
def test_the_receipts_lookup_reads_the_reports_it_found_not_the_whole_table(
    engine: Engine,
) -> None:
    """The receipt's suggestions look among reports of any age, in the same statement as
    grouping. What each candidate's report row adds must be read for the candidates only:
    PostgreSQL once hashed the whole report table for it, in every lookup."""
    from sqlalchemy import delete, text

    from feedbot.models import Report, ReportTerm

    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite reads each candidate's report row by its rowid")
    now = utcnow()
    wording = "Kassenwaage in Filiale Suhl wiegt falsch"
    with Session(engine) as session:
        session.execute(delete(ReportTerm))
        session.execute(delete(Report))
        older = _other_reports(3000, at=lambda n: now - timedelta(days=365 - n % 300))
        for n, row in enumerate(older):
            row["text"] = f"Kassenwaage Filiale {n % 40} wiegt falsch, Eichung {n}"
        _insert(session, older)
        for minutes in range(5):
            add_report(session, f"{wording} ({minutes})", at=now - timedelta(minutes=minutes))
        session.commit()
        session.execute(text("ANALYZE report, report_term"))
        session.commit()
    read = _window_reads(
        engine,
        wording,
        now - timedelta(minutes=30),
        expected=5,
        alongside=(similar_reports.SUGGESTIONS,),
        tables=("report",),
    )
    print(json.dumps({"report_rows_read": read}))
    assert read < 1000, "the lookup read the report table, not its candidates' rows"


@pytest.mark.usefixtures("statistics_by_hand")
def test_a_lookup_in_a_busy_window_reads_what_its_words_match_not_every_report(
    engine: Engine,
) -> None:
    """In an outage the last minutes hold hundreds of open reports. Grouping's lookup must
    read the index rows of the text's rare words, not try every report of the window for
    each word. SQLite's planner chose that, starting from the open reports' index: four
    times the work at 500 reports in the window. So did PostgreSQL's, when the text's words
    are common in a history its statistics know and the burst is newer than them: it takes
    the window for a report or two. The window's first report id is still looked up among
    the window's entries of the creation time index: a few steps each. (SQLite's work is
    counted in its virtual machine's steps, PostgreSQL's in the index scans of
    `report_term` it begins.)"""
    from sqlalchemy import delete, text

    from feedbot.models import Report, ReportTerm

    now = utcnow()
    wording = "Kassenwaage in Filiale Suhl wiegt falsch"

    def window(others: int) -> None:
        """A year's history, then five reports in the wording and `others` about something
        else, all recent."""
        with Session(engine) as session:
            session.execute(delete(ReportTerm))
            session.execute(delete(Report))
            older = _other_reports(2000, at=lambda n: now - timedelta(days=365 - n % 300))
            for n, row in enumerate(older):
                row["text"] = f"Kassenwaage Filiale {n % 40} wiegt falsch, Eichung {n}"
            _insert(session, older)
            session.commit()
            if engine.dialect.name != "sqlite":
                # As in an outage: the statistics are older than the burst.
                session.execute(text("ANALYZE report, report_term"))
                session.commit()
            for minutes in range(5):
                add_report(session, f"{wording} ({minutes})", at=now - timedelta(minutes=minutes))
            _insert(session, _other_reports(others, at=lambda n: now - timedelta(seconds=n % 600)))
            session.commit()

    since = now - timedelta(minutes=30)
    sqlite = engine.dialect.name == "sqlite"

    def reads() -> int:
        if sqlite:
            return _window_reads(engine, wording, since, expected=5)
        return _term_scans(engine, wording, since, expected=5)

    window(0)
    reads()  # the common words' counts, kept from now on (`TermFrequencies`)
    quiet = reads()
    window(500)
    busy = reads()
    print(json.dumps({"read_quiet": quiet, "read_with_500_other_reports": busy}))
    # SQLite: about ten steps per index row it reads; PostgreSQL: an index scan per report.
    assert busy - quiet < (10 * 500 if sqlite else 50), (
        "every report of the window was tried for every word"
    )


@pytest.mark.usefixtures("statistics_by_hand")
def test_grouping_reads_its_words_index_rows_once_for_both_of_its_pools(engine: Engine) -> None:
    """In an outage every report of the last minutes is alike, so grouping's window and the
    receipt's suggestions rank the same reports by the same rare words. One statement looks
    both up; it must read those words' index rows once, not once per pool. (SQLite's work is
    counted in its virtual machine's steps; PostgreSQL's in the `report_term` index rows
    its plan reads, from `EXPLAIN ANALYZE`.)"""
    from sqlalchemy import delete, text

    from feedbot.models import Report, ReportTerm

    now = utcnow()
    wording = "Kassenwaage in Filiale Suhl wiegt falsch"
    with Session(engine) as session:
        session.execute(delete(ReportTerm))
        session.execute(delete(Report))
        _insert(session, _burst(400, now))
        session.commit()
        if engine.dialect.name != "sqlite":
            session.execute(text("ANALYZE report, report_term"))
            session.commit()
    since = now - timedelta(minutes=15)

    def suggestions(session: Session) -> list[Any]:
        return similar_reports.alike_reports(
            session, text=wording, category=None, statuses=similar_reports.SUGGESTIONS.statuses
        )

    def grouping(session: Session) -> list[Any]:
        return _grouping_lookup(session, wording, since, (similar_reports.SUGGESTIONS,))

    def window(session: Session) -> list[Any]:
        return _grouping_lookup(session, wording, since)

    measure = _reads if engine.dialect.name == "sqlite" else _plan_rows_read
    measure(engine, suggestions)  # the common words' counts, kept from now on
    suggestions_alone, _ = measure(engine, suggestions)
    window_alone, _ = measure(engine, window)
    both, found = measure(engine, grouping)
    print(json.dumps({"apart": [window_alone, suggestions_alone], "together": both}))
    assert len(found) == 50
    # Read twice, the pair costs about both apart (SQLite) or the window and half the
    # suggestions (PostgreSQL, whose suggestions stop early); read once, less than that.
    assert both < window_alone + suggestions_alone * 0.25, (
        "the words' index rows were read once per pool"
    )


@pytest.mark.usefixtures("statistics_by_hand")
def test_in_a_long_outage_the_window_reads_the_reports_it_keeps_not_all_of_them(
    engine: Engine,
) -> None:
    """An outage that lasts puts thousands of alike reports in the last minutes, newer than
    PostgreSQL's statistics. Grouping's window keeps the hundred that share the most of the
    text's rare words: it reads those reports by id, best ranked first, and stops. Joined
    as a whole, PostgreSQL hashed every report of the window first (1 ms of a 6.5 ms lookup
    with 3,000 in the window). The window's first id is still found among its entries of
    the creation time index, a row each."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite reads each candidate's report row by its rowid")
    from sqlalchemy import delete, text

    from feedbot.models import Report, ReportTerm

    now = utcnow()
    wording = "Kassenwaage in Filiale Suhl wiegt falsch"
    burst = 1500
    with Session(engine) as session:
        session.execute(delete(ReportTerm))
        session.execute(delete(Report))
        _insert(session, _other_reports(2000, at=lambda n: now - timedelta(days=400 - n % 300)))
        session.commit()
        session.execute(text("ANALYZE report, report_term"))  # older than the burst
        session.commit()
        _insert(session, _burst(burst, now))
        session.commit()
    since = now - timedelta(minutes=15)

    def grouping(session: Session) -> list[Any]:
        return _grouping_lookup(session, wording, since, (similar_reports.SUGGESTIONS,))

    read, found = _plan_rows_read(engine, grouping, table="report")
    print(json.dumps({"report_rows_read": read, "window": burst}))
    assert len(found) == 50
    # The window's entries once (its first id), the hundred kept, the receipt's thirty.
    assert read < burst + 300, "every report of the window was read to join it"


@pytest.mark.usefixtures("statistics_by_hand")
def test_postgresql_plans_the_lookup_for_each_run_s_own_values(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg prepares a statement once it ran five times on a connection, and after five
    plans for their own values PostgreSQL may settle on one plan for any: the window's
    plan made when the last minutes held a few reports would then read an outage's
    thousands the same way. The lookup is planned for its own values every time."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite plans every statement for its values")
    from sqlalchemy import text

    now = utcnow()
    wording = "Kassenwaage in Filiale Suhl wiegt falsch"
    with Session(engine) as session:
        for minutes in range(20):
            add_report(session, f"{wording} {minutes}", at=now - timedelta(minutes=minutes))
        session.commit()
        session.execute(text("ANALYZE report, report_term"))  # not an earlier test's
        session.commit()
    since = now - timedelta(minutes=15)

    def plans_after_fourteen_lookups() -> tuple[int, int]:
        """(generic, custom) plans of the prepared lookup, on a pool's one connection."""
        engine.dispose()
        with engine.connect():  # one connection in the pool, used by every lookup below
            pass
        for _ in range(14):
            with Session(engine) as session:
                _grouping_lookup(session, wording, since, (similar_reports.SUGGESTIONS,))
                session.commit()
        with Session(engine) as session:
            (plans,) = session.execute(
                text(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE '%every_share%'"
                )
            ).all()
        return int(plans.generic_plans), int(plans.custom_plans)

    # psycopg prepares it after five runs; each run since is planned afresh.
    generic, custom = plans_after_fourteen_lookups()
    assert generic == 0 and custom >= 5
    # Without the setting, PostgreSQL settles on one plan for any values here.
    with monkeypatch.context() as patched:
        patched.setattr(similar_reports, "_planned_for_its_values", lambda _: nullcontext())
        generic, _ = plans_after_fourteen_lookups()
    assert generic > 0


def _plan_rows_read(
    engine: Engine, lookup: Callable[[Session], list[Any]], table: str = "report_term"
) -> tuple[int, list[Any]]:
    """The rows PostgreSQL's plans read from `table` for `lookup`'s statements (each run
    once more under `EXPLAIN ANALYZE`), and what it found."""
    read = [0]
    scans = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")

    def rows_of(plan: dict[str, Any]) -> int:
        """Rows of the scans that read `table`, by its indexes or not (a bitmap's index
        scan is not counted: its heap scan reads the same rows)."""
        own = 0
        if plan["Node Type"] in scans and plan.get("Relation Name") == table:
            own = int(plan["Actual Rows"]) * int(plan["Actual Loops"])
        return own + sum(rows_of(child) for child in plan.get("Plans", []))

    def explained(_conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            read[0] += rows_of(cursor.fetchone()[0][0]["Plan"])

    event.listen(engine, "before_cursor_execute", explained)
    try:
        with Session(engine) as session:
            found = lookup(session)
    finally:
        event.remove(engine, "before_cursor_execute", explained)
    return read[0], found
