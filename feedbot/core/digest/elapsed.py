"""Time between two moments of a report, measured by the database, and its percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Float, cast, func
from sqlmodel import Session


def seconds_between(session: Session, later: Any, earlier: Any) -> ColumnElement[Any]:
    """`later - earlier` in seconds, computed by the database (SQLite has no intervals)."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return cast(func.extract("epoch", later - earlier), Float)  # numeric since PostgreSQL 14


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks of sorted `values` (numpy's default)."""
    position = (len(values) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)
