"""Similar reports and earlier solutions are shown to the reporter when they file."""

from __future__ import annotations

import json

from sqlalchemy import Engine
from sqlmodel import Session

from feedbot.core import reports, similarity
from feedbot.core.config import RuntimeConfig
from feedbot.core.reports import ReportDraft
from feedbot.models import ReportSource, ReportStatus, utcnow
from tests.harness import ALICE, BOB, CAROL, IDENTITIES, LEADER, Bot


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


def test_similar_reports_prefer_the_same_category_and_skip_closed_ones(engine: Engine) -> None:
    config = RuntimeConfig()
    now = utcnow()
    with Session(engine) as session:

        def add(text: str, category: str, status: ReportStatus = ReportStatus.OPEN) -> int:
            report = reports.create_report(
                session,
                reporter_id=ALICE,
                draft=ReportDraft(text=text, source=ReportSource.MODAL, category=category),
                config=config,
                now=now,
                identities=IDENTITIES,
            )
            report.status = status
            session.add(report)
            session.flush()
            assert report.id is not None
            return report.id

        printer_devices = add("Printer in shop Leipzig jams on every receipt", "Devices & hardware")
        printer_it = add("Receipt printer jams in shop Halle", "IT systems")
        add("Printer jams on receipts, fixed", "Devices & hardware", ReportStatus.RESOLVED)
        add("Tariff MagentaMobil charged twice", "Billing & tariffs")
        session.commit()
        matches = reports.similar_reports(
            session, text="The receipt printer jams again", category="Devices & hardware"
        )
    assert [m.report.id for m in matches] == [printer_devices, printer_it]
    assert all(0 < m.score <= 1 for m in matches)


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
    dm = bot.slack.dm_channel(CAROL)
    bot.message(CAROL, "Activation portal: eSIM error 503 again", channel=dm, channel_type="im")
    bot.drain()
    text = json.dumps(
        [m["blocks"] for m in bot.slack.messages(dm) if m.get("blocks")], ensure_ascii=False
    )
    assert "Colleagues solved a similar problem before (FB-1001)" in text
    assert "Clear the browser cache" in text
