"""What buttons and forms carry through Slack and back: one typed codec per kind of value.

Block Kit builders write these values and listeners read them back, but a payload arrives
from the network and may carry anything: a stale card, a forged request. Decoding therefore
never raises; it returns the ids, or None for anything that is not what a builder wrote
(missing, malformed, out of range), and the listener refuses that like any other bad input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from feedbot.core.reports import MAX_ID


def positive_id(raw: object) -> int | None:
    """A row id as a builder wrote it: ASCII digits, 1 to the largest id a row can have."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw if 0 < raw <= MAX_ID else None
    if not isinstance(raw, str) or not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


def pressed(body: Mapping[str, Any]) -> dict[str, Any]:
    """The element a `block_actions` payload is about; empty when the payload has none."""
    actions = body.get("actions")
    first = actions[0] if isinstance(actions, list) and actions else None
    return first if isinstance(first, dict) else {}


@dataclass(frozen=True)
class IdsInValue:
    """`arity` ids joined by `:` in a button's value: a report; a draft and a report."""

    arity: int

    def encode(self, *ids: int | None) -> str:
        assert len(ids) == self.arity and all(ids), ids
        return ":".join(str(i) for i in ids)

    def decode(self, body: Mapping[str, Any]) -> tuple[int, ...] | None:
        raw = pressed(body).get("value")
        parts = raw.split(":") if isinstance(raw, str) else []
        ids = tuple(positive_id(part) for part in parts)
        if len(ids) != self.arity or None in ids:
            return None
        return tuple(i for i in ids if i is not None)

    def first(self, body: Mapping[str, Any]) -> int | None:
        """The first id, for the many buttons that carry only one."""
        ids = self.decode(body)
        return ids[0] if ids else None


@dataclass(frozen=True)
class IdInMetadata:
    """One id in a modal's `private_metadata`, as the JSON object `{key: id}`."""

    key: str

    def encode(self, value: int | None) -> str:
        assert value, value
        return json.dumps({self.key: value})

    def decode(self, view: Mapping[str, Any]) -> int | None:
        try:
            data = json.loads(view.get("private_metadata") or "{}")
        except (TypeError, ValueError):
            return None
        return positive_id(data.get(self.key)) if isinstance(data, dict) else None


@dataclass(frozen=True)
class TextInMetadata:
    """One short name in a modal's `private_metadata` (`{key: name}`), e.g. a settings group."""

    key: str

    def encode(self, value: str) -> str:
        return json.dumps({self.key: value})

    def decode(self, view: Mapping[str, Any]) -> str:
        try:
            data = json.loads(view.get("private_metadata") or "{}")
        except (TypeError, ValueError):
            return ""
        value = data.get(self.key) if isinstance(data, dict) else None
        return value if isinstance(value, str) else ""


REPORT = IdsInValue(1)
"""Every report button: card, Home, notices, reminders."""
GROUP = IdsInValue(1)
"""Every incident card button."""
REPORT_AND_TARGET = IdsInValue(2)
"""*Me too instead*: the reporter's new report, and the earlier one it joins."""
DRAFT = IdsInValue(1)
"""*New report* on a held direct message."""
DRAFT_AND_REPORT = IdsInValue(2)
"""*About FB-…* on a held direct message: the draft, and the report it belongs to."""
REPORT_FORM = IdInMetadata("report_id")
"""Every modal about one report (triage forms, follow-up date, the reporter's reply)."""
GROUP_FORM = IdInMetadata("group_id")
"""The incident forms."""
SETTINGS_FORM = TextInMetadata("group")
"""The admin settings modal: which group of settings it edits."""
