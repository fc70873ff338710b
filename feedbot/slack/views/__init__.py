"""Block Kit builders: pure functions from domain objects and a locale to messages and views."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import Block

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100


@dataclass
class Message:
    """A message body: fallback `text` (shown in notifications) plus blocks."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def to_payload(self) -> dict[str, Any]:
        """The Web API arguments. slack-sdk checks each block's limits here; the block count,
        which it does not check, is checked too."""
        if len(self.blocks) > MAX_MESSAGE_BLOCKS:
            raise ValueError(f"{len(self.blocks)} blocks > {MAX_MESSAGE_BLOCKS} per message")
        payload: dict[str, Any] = {"text": self.text[:3000]}
        if self.blocks:
            payload["blocks"] = [block.to_dict() for block in self.blocks]
        return payload


def slack_date(moment: datetime, fallback_format: str = "%Y-%m-%d %H:%M UTC") -> str:
    """A date Slack shows in each reader's own timezone and language."""
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{moment.strftime(fallback_format)}>"


def slack_ago(moment: datetime) -> str:
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{{ago}}|{moment.strftime('%Y-%m-%d %H:%M UTC')}>"
