"""The report form (modal), and reading its submission back into a `ReportDraft`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    CheckboxesElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
)
from slack_sdk.models.blocks.block_elements import FileInputElement
from slack_sdk.models.views import View

from feedbot.core.attachments import FORM_FILETYPES, MAX_FILES, IncomingFile
from feedbot.core.config import RuntimeConfig
from feedbot.core.reports import MAX_CONTACT, MAX_LOCATION, MAX_TEXT, ReportDraft
from feedbot.errors import InvalidValue
from feedbot.models import ReportSource, Urgency
from feedbot.slack.i18n import t
from feedbot.slack.ids import INPUT, Callback, Field

YES = "yes"


@dataclass(frozen=True)
class FormContext:
    """What the form carries in `private_metadata` through the round trip via Slack."""

    source: ReportSource = ReportSource.MODAL
    report_id: int | None = None
    source_channel: str | None = None
    source_ts: str | None = None
    source_permalink: str | None = None
    files: tuple[IncomingFile, ...] = ()
    """The files of the message a shortcut was used on: they come with the report."""

    def encode(self) -> str:
        data: dict[str, Any] = {
            key: value
            for key, value in self.__dict__.items()
            if value is not None and key != "files"
        }
        if self.files:  # bounded: names are cut, at most ten files travel along
            data["files"] = [[f.file_id, f.name[:80], f.mimetype, f.size] for f in self.files[:10]]
        encoded = json.dumps(data)
        if len(encoded) > 3000:  # never cut JSON: leave the files out
            data.pop("files", None)
            encoded = json.dumps(data)[:3000]
        return encoded

    @classmethod
    def decode(cls, raw: str | None) -> FormContext:
        try:
            data = json.loads(raw or "{}")
            return cls(
                source=ReportSource(data.get("source", ReportSource.MODAL)),
                report_id=int(data["report_id"]) if data.get("report_id") else None,
                source_channel=data.get("source_channel"),
                source_ts=data.get("source_ts"),
                source_permalink=data.get("source_permalink"),
                files=tuple(
                    IncomingFile(
                        file_id=str(f[0]), name=str(f[1]), mimetype=str(f[2]), size=int(f[3])
                    )
                    for f in data.get("files") or []
                ),
            )
        except (ValueError, TypeError, KeyError, IndexError):
            return cls()


def _option(text: str, value: str) -> Option:
    return Option(text=PlainTextObject(text=text[:75]), value=value[:150])


def build_report_form(
    *,
    config: RuntimeConfig,
    locale: str,
    context: FormContext,
    prefill: ReportDraft | None = None,
    notice: str | None = None,
) -> View:
    """The report modal. `prefill` fills it for *Add details* and the message shortcut;
    `notice` opens it with a word on top (why a quick report waits in it)."""
    draft = prefill or ReportDraft(text="", source=context.source)
    categories = [_option(name, name) for name in config.categories[:100]]
    category_initial = next((o for o in categories if o.value == draft.category), None)
    urgencies = [_option(t(locale, f"urgency.{u.value}"), u.value) for u in Urgency]
    blocks: list[Any] = []
    if notice:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=notice[:2000])]))
    if context.source_permalink:
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=t(locale, "form.from_message", link=context.source_permalink)
                    )
                ]
            )
        )
    blocks += [
        InputBlock(
            block_id=Field.TEXT,
            label=t(locale, "form.text"),
            hint=t(locale, "form.text_hint"),
            element=PlainTextInputElement(
                action_id=INPUT,
                multiline=True,
                max_length=MAX_TEXT,
                initial_value=draft.text[:MAX_TEXT] or None,
            ),
        ),
        InputBlock(
            block_id=Field.CATEGORY,
            label=t(locale, "form.category"),
            element=StaticSelectElement(
                action_id=INPUT, options=categories, initial_option=category_initial
            ),
        ),
    ]
    if config.locations:
        locations = [_option(name, name) for name in config.locations[:100]]
        location_element: Any = StaticSelectElement(
            action_id=INPUT,
            options=locations,
            initial_option=next((o for o in locations if o.value == draft.location), None),
        )
    else:
        location_element = PlainTextInputElement(
            action_id=INPUT, max_length=MAX_LOCATION, initial_value=draft.location or None
        )
    blocks += [
        InputBlock(
            block_id=Field.LOCATION,
            label=t(locale, "form.location"),
            hint=t(locale, "form.location_hint"),
            element=location_element,
            optional=True,
        ),
        InputBlock(
            block_id=Field.URGENCY,
            label=t(locale, "form.urgency"),
            element=StaticSelectElement(
                action_id=INPUT,
                options=urgencies,
                initial_option=next(o for o in urgencies if o.value == draft.urgency.value),
            ),
        ),
        InputBlock(
            block_id=Field.CUSTOMERS,
            label=t(locale, "form.customers"),
            element=NumberInputElement(
                action_id=INPUT,
                is_decimal_allowed=False,
                min_value=0,
                initial_value=draft.customers_affected,
            ),
            optional=True,
        ),
        _checkbox(
            Field.CALLBACK,
            t(locale, "form.callback"),
            t(locale, "form.callback_option"),
            draft.callback_requested,
        ),
        InputBlock(
            block_id=Field.CONTACT,
            label=t(locale, "form.contact"),
            hint=t(locale, "form.contact_hint"),
            element=PlainTextInputElement(
                action_id=INPUT,
                max_length=MAX_CONTACT,
                initial_value=draft.customer_contact or None,
            ),
            optional=True,
        ),
    ]
    blocks.append(
        InputBlock(
            block_id=Field.FILES,
            label=t(locale, "form.files"),
            hint=t(locale, "form.files_hint", count=MAX_FILES),
            element=FileInputElement(
                action_id=INPUT, filetypes=list(FORM_FILETYPES), max_files=MAX_FILES
            ),
            optional=True,
        )
    )
    if config.allow_anonymous:
        blocks.append(
            _checkbox(
                Field.ANONYMOUS,
                t(locale, "form.anonymous"),
                t(locale, "form.anonymous_option"),
                draft.anonymous,
                hint=t(locale, "form.anonymous_hint"),
            )
        )
    details = context.report_id is not None
    return View(
        type="modal",
        callback_id=Callback.REPORT_FORM,
        title=t(locale, "form.title_details" if details else "form.title"),
        submit=t(locale, "form.save" if details else "form.submit"),
        close=t(locale, "form.close"),
        private_metadata=context.encode(),
        blocks=blocks,
    )


def _checkbox(
    block_id: str, label: str, option: str, checked: bool, hint: str | None = None
) -> InputBlock:
    choice = _option(option, YES)
    return InputBlock(
        block_id=block_id,
        label=label,
        hint=hint,
        optional=True,
        element=CheckboxesElement(
            action_id=INPUT, options=[choice], initial_options=[choice] if checked else None
        ),
    )


def _value(values: dict[str, Any], block_id: str) -> dict[str, Any]:
    state = values.get(block_id, {})
    return state.get(INPUT, {}) if isinstance(state, dict) else {}


def read_report_form(values: dict[str, Any], context: FormContext) -> ReportDraft:
    """A draft from `view.state.values`; `InvalidValue(field=…)` for input Slack let through."""
    category = (_value(values, Field.CATEGORY).get("selected_option") or {}).get("value")
    location_state = _value(values, Field.LOCATION)
    location = (location_state.get("selected_option") or {}).get("value") or location_state.get(
        "value"
    )
    urgency_raw = (_value(values, Field.URGENCY).get("selected_option") or {}).get("value")
    try:
        urgency = Urgency(urgency_raw or Urgency.NORMAL)
    except ValueError:
        raise InvalidValue("Choose an urgency.", field=Field.URGENCY) from None
    customers_raw = (_value(values, Field.CUSTOMERS).get("value") or "").strip()
    customers: int | None = None
    if customers_raw:
        try:
            customers = int(customers_raw)
        except ValueError:
            raise InvalidValue(
                "Enter a whole number, 0 or more.", field=Field.CUSTOMERS, code="not_a_number"
            ) from None

    def checked(block_id: str) -> bool:
        selected = _value(values, block_id).get("selected_options") or []
        return any(option.get("value") == YES for option in selected)

    return ReportDraft(
        text=_value(values, Field.TEXT).get("value") or "",
        source=context.source,
        category=category,
        location=location,
        urgency=urgency,
        customers_affected=customers,
        callback_requested=checked(Field.CALLBACK),
        customer_contact=_value(values, Field.CONTACT).get("value"),
        anonymous=checked(Field.ANONYMOUS),
        source_channel=context.source_channel,
        source_ts=context.source_ts,
        source_permalink=context.source_permalink,
    )


def read_form_files(values: dict[str, Any], context: FormContext) -> list[IncomingFile]:
    """The files a submission brings: those of the message a shortcut was used on, then
    those put into the form's file field."""
    raw = _value(values, Field.FILES).get("files") or []
    found = [IncomingFile.from_slack(item) for item in raw if isinstance(item, dict)]
    return [*context.files, *(item for item in found if item is not None)]
