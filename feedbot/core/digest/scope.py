"""Which reports a digest counts: the whole company's, or one route's."""

from __future__ import annotations

from sqlalchemy import ColumnElement
from sqlmodel import col

from feedbot.models import IncidentGroup, Report


def in_channel(channel: str | None) -> tuple[ColumnElement[bool], ...]:
    """The condition that keeps a route's digest to the reports routed to its leadership
    channel; none for the company digest. Added to every query a digest makes."""
    return () if channel is None else (col(Report.leadership_channel) == channel,)


def groups_in_channel(channel: str | None) -> tuple[ColumnElement[bool], ...]:
    """The same for incident groups, which count once in a digest's open figures."""
    return () if channel is None else (col(IncidentGroup.leadership_channel) == channel,)
