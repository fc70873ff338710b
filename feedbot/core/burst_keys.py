"""The second key that puts a report into an incident group: same place, same kind of
problem, at the same time, however it is worded.

Grouping by shared terms (`incidents.place`, `similar_reports.alike_reports`) joins reports told
in one wording; an outage told four ways in two languages grew four groups. So a report
also joins an open group (or, with enough others, forms one) when, within the burst window,
reports with the **same location** (as stored: chosen from `locations` where those are set)
and the **same category**
also name the **same kind of problem**: they share a *concept* of the small DE/EN table
below (`Netz`, `Netzausfall`, `kein Netz`, `network`, `no signal`, `Empfang`, … are all
*network*). All three are needed, so a broken coffee machine in the same shop and the same
minute as a network outage stays on its own card, and reports without a location never use
this key. A concept-free report (one no word of the table matches) only groups by its terms.

The table is deliberately small and stems by prefix (German compounds like
`Netzausfall`/`Mobilfunknetz` start with their head word often enough); it is read only
here, never stored, so suggestions and digest themes are unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from sqlmodel import Session, col, select

from feedbot.core.reports import OPEN_STATUSES
from feedbot.models import Report

CANDIDATES = 500
"""Reports of one place and category read per placement: a burst's worth, never a table."""

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

CONCEPTS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    # concept: (whole words, word prefixes); words are lower-case, umlauts folded (ä -> a)
    "network": (
        frozenset({"lte", "5g", "4g", "3g", "dsl", "wlan", "wifi", "funk", "net"}),
        (
            "netz",
            "network",
            "signal",
            "empfang",
            "reception",
            "mobilfunk",
            "mobile",
            "cellular",
            "coverage",
            "abdeckung",
            "funkloch",
            "internet",
            "verbindung",
            "connection",
            "connectivity",
            "sendemast",
            "mast",
        ),
    ),
    "outage": (
        frozenset({"down", "weg", "tot", "offline", "dead"}),
        ("ausfall", "ausgefallen", "outage", "storung", "stoerung", "unterbrech", "interrupt"),
    ),
    "payment": (
        frozenset({"pos", "ec"}),
        ("kasse", "kartenzahl", "kartenterminal", "payment", "terminal", "till", "checkout"),
    ),
    "power": (
        frozenset({"power", "strom"}),
        ("stromausfall", "blackout", "electricity"),
    ),
}
"""Kinds of problem an outage is told as. `outage` alone says little (anything can be
`down`), so it never links reports by itself: see `concepts`."""

WEAK = frozenset({"outage"})


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("ß", "ss")


def concepts(text: str) -> frozenset[str]:
    """The kinds of problem `text` names, from the DE/EN table (`WEAK` ones left out)."""
    found: set[str] = set()
    for raw in _WORD.findall(text):
        word = _fold(raw)
        for concept, (whole, prefixes) in CONCEPTS.items():
            if word in whole or word.startswith(prefixes):
                found.add(concept)
    return frozenset(found - WEAK)


def same_place_and_problem(
    session: Session, *, report: Report, since: datetime, limit: int = CANDIDATES
) -> list[Report]:
    """Open reports since `since` at `report`'s place, in its category, that share a kind of
    problem with it: the second burst key. Empty when it has no location or no concept."""
    wanted = concepts(report.text)
    if not report.location or not wanted:
        return []
    rows = session.exec(
        select(Report)
        .where(
            col(Report.category) == report.category,
            col(Report.location) == report.location,
            col(Report.created_at) >= since,
            col(Report.status).in_(OPEN_STATUSES),
            col(Report.id) != report.id,
        )
        .order_by(col(Report.id).desc())
        .limit(limit)
    ).all()
    return [other for other in rows if concepts(other.text) & wanted]
