"""The week as CSV, built by the database, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    String,
    case,
    cast,
    func,
    literal,
    null,
    type_coerce,
)
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from feedbot.core.digest.periods import week_bounds
from feedbot.core.digest.scope import in_channel
from feedbot.core.privacy import FORMULA_START
from feedbot.models import (
    REFERENCE_OFFSET,
    OutboxMessage,
    Report,
)

CSV_COLUMNS = (
    "reference",
    "filed",
    "category",
    "location",
    "urgency",
    "status",
    "reporter",
    "me_too",
    "customers_affected",
    "acknowledged",
    "resolved",
    "follow_up",
    "duplicate_of",
    "text",
    "resolution",
    "card",
)


def _as_text(column: Any) -> ColumnElement[str]:
    """User text a spreadsheet shows as text: a leading `=`, `+`, `-` or `@` would make it a
    formula, so such a cell starts with an apostrophe."""
    return case(
        (func.substr(column, 1, 1).in_(FORMULA_START), literal("'", String) + column),
        else_=column,
    )


def _reference(report_id: Any) -> ColumnElement[str]:
    return literal("FB-", String) + cast(report_id + REFERENCE_OFFSET, String)


def week_csv(
    session: Session,
    *,
    period: str,
    zone: ZoneInfo,
    link_base: str | None = None,
    channel: str | None = None,
) -> bytes:
    """Every report filed in the week (duplicates too, marked), as UTF-8 CSV with a byte-order
    mark so spreadsheet programs read umlauts right. Times are local to the digest; reporters
    who chose anonymity are `anonymous`; customer contacts are never included; `card` links
    to the report's card when `link_base` (the workspace URL) is known. With `channel`, only
    the reports routed to that leadership channel.

    Tens of thousands of rows: the database writes each cell's final text (references,
    links, the formula guard; on PostgreSQL the local times too, and the CSV itself with
    COPY), so no value needs Python work beyond SQLite's local times.
    """
    start, end = week_bounds(period, zone)
    local, (filed, acknowledged, resolved, follow_up) = _local_times(session, zone)
    card: ColumnElement[Any] = null()
    if link_base:
        card = case(
            (
                col(OutboxMessage.result_ts).is_not(None),
                literal(f"{link_base.rstrip('/')}/archives/", String)
                + col(OutboxMessage.result_channel)
                + "/p"
                + func.replace(col(OutboxMessage.result_ts), ".", ""),
            ),
        )
    cells = (
        _reference(col(Report.id)),
        filed,
        _as_text(col(Report.category)),
        _as_text(col(Report.location)),
        type_coerce(Report.urgency, String),
        type_coerce(Report.status, String),
        case((col(Report.anonymous), "anonymous"), else_=col(Report.reporter_id)),
        col(Report.me_too_count),
        col(Report.customers_affected),
        acknowledged,
        resolved,
        follow_up,
        case((col(Report.duplicate_of_id).is_not(None), _reference(col(Report.duplicate_of_id)))),
        _as_text(col(Report.text)),
        _as_text(col(Report.resolution_note)),
        card,
    )
    query: Any = (
        sa_select(*(cell.label(name) for cell, name in zip(cells, CSV_COLUMNS, strict=True)))
        .outerjoin(OutboxMessage, col(OutboxMessage.id) == col(Report.card_message_id))
        .where(col(Report.created_at) >= start, col(Report.created_at) < end, *in_channel(channel))
        .order_by(col(Report.created_at), col(Report.id))
    )
    if local is None:
        return _copy_csv(session, query)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    result = session.connection().execute(query)
    while chunk := result.fetchmany(5000):
        writer.writerows(
            (
                row[0],
                local(row[1]),
                *row[2:9],
                local(row[9]),
                local(row[10]),
                local(row[11]),
                *row[12:],
            )
            for row in chunk
        )
    return out.getvalue().encode("utf-8-sig")


def _copy_csv(session: Session, query: Any) -> bytes:
    """PostgreSQL writes the CSV itself (`COPY … TO STDOUT`): no row passes through Python."""
    compiled = query.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    out = io.BytesIO()
    out.write("\ufeff".encode())
    driver: Any = session.connection().connection.driver_connection
    with (
        driver.cursor() as cursor,
        cursor.copy(
            f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER)", compiled.params
        ) as copy,
    ):
        for block in copy:
            out.write(block)
    return out.getvalue()


_MOMENTS = ("created_at", "acknowledged_at", "resolved_at", "follow_up_at")


def _local_times(
    session: Session, zone: ZoneInfo
) -> tuple[Callable[[str | None], str] | None, list[ColumnElement[str]]]:
    """The CSV's four moments as `2026-11-18 10:00` in `zone`: the columns to select, and
    what still turns their values into that text (None: nothing, they already are).

    PostgreSQL formats them itself (`timezone()` follows the same IANA rules as zoneinfo).
    SQLite has no timezones; it returns its stored UTC text (`2026-11-18 09:00:00.000000`),
    converted here once per distinct minute: a week's reports share a few thousand minutes,
    so tens of thousands of values cost a dict lookup each."""
    columns = [getattr(Report, name) for name in _MOMENTS]
    if session.get_bind().dialect.name != "sqlite":
        return None, [
            func.to_char(func.timezone(zone.key, column), "YYYY-MM-DD HH24:MI")
            for column in columns
        ]
    minutes: dict[str, str] = {}

    def local(stored: str | None) -> str:
        if stored is None:
            return ""
        key = stored[:16]
        shown = minutes.get(key)
        if shown is None:
            moment = datetime.fromisoformat(key).replace(tzinfo=UTC).astimezone(zone)
            shown = minutes[key] = moment.replace(tzinfo=None).isoformat(" ", "minutes")
        return shown

    return local, [type_coerce(column, String) for column in columns]
