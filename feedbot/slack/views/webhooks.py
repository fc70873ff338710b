"""The admins' webhooks form: the receivers, their health, and a way to add or remove one."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    CheckboxesElement,
    ConfirmObject,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from feedbot.core import webhooks
from feedbot.core.webhooks import Health
from feedbot.slack.i18n import t
from feedbot.slack.ids import INPUT, Action, Callback
from feedbot.slack.text import escape, shorten

URL_BLOCK = "webhook_url"
EVENTS_BLOCK = "webhook_events"
SHOWN = 20
"""Receivers listed in the form; more are listed by `feedbot webhooks list`."""


def webhooks_section(locale: str) -> Block:
    """The entry among the settings groups (picker and admins' Home)."""
    return SectionBlock(
        block_id="settings-webhooks",
        text=MarkdownTextObject(
            text=f"*{t(locale, 'group.webhooks')}*\n{t(locale, 'group.webhooks_help')}"
        ),
        accessory=ButtonElement(
            text=t(locale, "admin.edit"), action_id=Action.EDIT_WEBHOOKS, value="webhooks"
        ),
    )


def _line(item: Health, locale: str) -> str:
    webhook = item.webhook
    if webhook.failing_since is not None:
        state = t(locale, "webhooks.failing", error=escape(item.last_error or "?"))
    else:
        state = t(locale, "webhooks.ok")
    counts = t(locale, "webhooks.counts", waiting=item.waiting, failed=item.failed)
    events = ", ".join(f"`{event}`" for event in webhook.events.split(","))
    return shorten(
        f"*{webhook.id}* · {escape(shorten(webhook.url, 300))}\n{events}\n{state} · {counts}", 3000
    )


def build_webhooks_form(
    items: list[Health], *, locale: str, added: webhooks.Added | None = None
) -> View:
    """The list, then the inputs for a new one. `added`: the one just added, with its secret,
    shown this once."""
    blocks: list[Block] = [
        ContextBlock(elements=[MarkdownTextObject(text=t(locale, "group.webhooks_help"))])
    ]
    if added is not None:
        text = t(locale, "webhooks.added", id=added.webhook.id, secret=added.secret)
        blocks.append(SectionBlock(block_id="webhook_added", text=MarkdownTextObject(text=text)))
    for item in items[:SHOWN]:
        blocks.append(
            SectionBlock(
                block_id=f"webhook-{item.webhook.id}",
                text=MarkdownTextObject(text=_line(item, locale)),
                accessory=ButtonElement(
                    text=t(locale, "webhooks.remove"),
                    action_id=Action.REMOVE_WEBHOOK,
                    value=str(item.webhook.id),
                    style="danger",
                    confirm=ConfirmObject(
                        title=t(locale, "webhooks.remove_title"),
                        text=t(locale, "webhooks.remove_confirm", id=item.webhook.id),
                        confirm=t(locale, "webhooks.remove"),
                        deny=t(locale, "form.close"),
                    ),
                ),
            )
        )
    if not items:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=t(locale, "webhooks.none"))))
    options = [
        Option(text=PlainTextObject(text=event), value=event, description=meaning[:75])
        for event, meaning in webhooks.EVENTS.items()
    ]
    blocks += [
        InputBlock(
            block_id=URL_BLOCK,
            label=t(locale, "webhooks.url"),
            hint=t(locale, "webhooks.url_hint"),
            element=PlainTextInputElement(
                action_id=INPUT, max_length=webhooks.MAX_URL, placeholder="https://"
            ),
            optional=True,
        ),
        InputBlock(
            block_id=EVENTS_BLOCK,
            label=t(locale, "webhooks.events"),
            element=CheckboxesElement(action_id=INPUT, options=options),
            optional=True,
        ),
    ]
    return View(
        type="modal",
        callback_id=Callback.WEBHOOKS_FORM,
        title=t(locale, "group.webhooks")[:24],
        submit=t(locale, "webhooks.add"),
        close=t(locale, "form.close"),
        blocks=blocks,
    )
