from tests.harness import ALICE, LEADERSHIP, Bot


def test_quick_report_reaches_leadership(bot: Bot) -> None:
    bot.setup_team()
    response = bot.command(ALICE, "The card reader in shop Leipzig rejects every EC card")
    assert response.status == 200
    body = response.body
    assert "FB-1001" in body
    bot.drain()
    report = bot.report()
    card = bot.card(report)
    assert "FB-1001" in card["text"]
    assert bot.slack.messages(LEADERSHIP)
