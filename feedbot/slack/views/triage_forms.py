"""Small modals leaders fill in from the card: reply, forward, resolve, duplicate, call back."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    CheckboxesElement,
    ConversationFilter,
    ConversationSelectElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    PlainTextObject,
)
from slack_sdk.models.views import View

from feedbot.core.triage import MAX_NOTE
from feedbot.models import Report
from feedbot.slack import codecs
from feedbot.slack.i18n import t
from feedbot.slack.ids import INPUT, Callback, Field

FORMS: dict[Callback, tuple[str, str, str | None, Field]] = {
    # callback: (title key, label key, hint key, field)
    Callback.REPLY_FORM: ("reply.title", "reply.label", "reply.hint", Field.NOTE),
    Callback.FORWARD_FORM: ("forward.title", "forward.label", "forward.hint", Field.CHANNEL),
    Callback.RESOLVE_FORM: ("resolve.title", "resolve.label", "resolve.hint", Field.NOTE),
    Callback.DUPLICATE_FORM: (
        "duplicate.title",
        "duplicate.label",
        "duplicate.hint",
        Field.REFERENCE,
    ),
    Callback.CALLED_FORM: ("called.title", "called.label", None, Field.NOTE),
}


SHARED = "yes"


def share_choice(locale: str) -> InputBlock:
    """*Share this solution with colleagues*, ticked: colleagues who later report something
    similar are offered it, and "you said, we did" tells it."""
    option = Option(text=PlainTextObject(text=t(locale, "resolve.share")), value=SHARED)
    return InputBlock(
        block_id=Field.SHARE,
        label=t(locale, "resolve.share_label"),
        hint=t(locale, "resolve.share_hint"),
        optional=True,
        element=CheckboxesElement(action_id=INPUT, options=[option], initial_options=[option]),
    )


def read_share(values: dict[str, object]) -> bool:
    """Whether *Share this solution* was left ticked (a form without it shares nothing)."""
    state = values.get(Field.SHARE)
    value = state.get(INPUT, {}) if isinstance(state, dict) else {}
    chosen = value.get("selected_options") if isinstance(value, dict) else None
    return isinstance(chosen, list) and any(
        isinstance(option, dict) and option.get("value") == SHARED for option in chosen
    )


def build_triage_form(
    callback: Callback, *, report: Report, locale: str, confidential: bool = False
) -> View:
    """`confidential`: the report's category is confidential, so its solution is never shared
    and the form does not offer to."""
    title_key, label_key, hint_key, field = FORMS[callback]
    element: PlainTextInputElement | ConversationSelectElement
    if field == Field.CHANNEL:
        element = ConversationSelectElement(
            action_id=INPUT,
            filter=ConversationFilter(include=["public", "private"], exclude_bot_users=True),
        )
    elif field == Field.REFERENCE:
        element = PlainTextInputElement(action_id=INPUT, max_length=20, placeholder="FB-1042")
    else:
        element = PlainTextInputElement(action_id=INPUT, multiline=True, max_length=MAX_NOTE)
    return View(
        type="modal",
        callback_id=callback,
        title=t(locale, title_key),
        submit=t(locale, "form.submit"),
        close=t(locale, "form.close"),
        private_metadata=codecs.REPORT_FORM.encode(report.id),
        blocks=[
            InputBlock(
                block_id=field,
                label=f"{t(locale, label_key)} ({report.reference})",
                hint=t(locale, hint_key) if hint_key else None,
                element=element,
            ),
            *(
                [share_choice(locale)]
                if callback == Callback.RESOLVE_FORM and not confidential
                else []
            ),
        ],
    )


def read_triage_form(values: dict[str, object], field: Field) -> str:
    state = values.get(field) or {}
    value = state.get(INPUT, {}) if isinstance(state, dict) else {}
    if not isinstance(value, dict):
        return ""
    return str(value.get("value") or value.get("selected_conversation") or "")
