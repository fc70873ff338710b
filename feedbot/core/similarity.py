"""Text similarity for "similar reports" and recurring themes.

Reports are short, mixed English and German, full of product names and typos. A report's
*terms* are its lower-cased words of three or more letters, minus common stop words, cut to
their first six letters (a crude stem that maps "Drucker"/"Druckers" and "printer"/"printers"
together). Similarity is the Jaccard index of two term sets. Terms are stored in
`report_term`, indexed by term, so candidates are found with one indexed query, not a scan.
"""

from __future__ import annotations

import re
import unicodedata

STEM_LENGTH = 6
MAX_TERMS = 40
SUGGEST_THRESHOLD = 0.25

_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)

STOP_WORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "are",
        "but",
        "not",
        "you",
        "all",
        "any",
        "can",
        "had",
        "her",
        "was",
        "one",
        "our",
        "out",
        "has",
        "have",
        "this",
        "that",
        "with",
        "they",
        "from",
        "what",
        "when",
        "will",
        "would",
        "there",
        "their",
        "been",
        "were",
        "which",
        "them",
        "then",
        "than",
        "into",
        "more",
        "some",
        "very",
        "just",
        "also",
        "only",
        "over",
        "such",
        "about",
        "after",
        "again",
        "still",
        "since",
        "while",
        "where",
        "who",
        "why",
        "how",
        "its",
        "it's",
        "our",
        "your",
        "yours",
        "ours",
        "she",
        "him",
        "his",
        "hers",
        "i'm",
        "we're",
        "doesn't",
        "don't",
        "didn't",
        "isn't",
        "can't",
        "der",
        "die",
        "das",
        "und",
        "ist",
        "nicht",
        "ein",
        "eine",
        "einer",
        "eines",
        "einem",
        "einen",
        "mit",
        "von",
        "für",
        "auf",
        "aus",
        "bei",
        "dem",
        "den",
        "des",
        "sich",
        "sie",
        "wir",
        "ihr",
        "ich",
        "auch",
        "noch",
        "nur",
        "wie",
        "was",
        "wenn",
        "aber",
        "oder",
        "als",
        "bis",
        "nach",
        "über",
        "unter",
        "vor",
        "schon",
        "mehr",
        "sehr",
        "kein",
        "keine",
        "keinen",
        "seit",
        "doch",
        "mal",
        "wird",
        "werden",
        "wurde",
        "wurden",
        "sind",
        "war",
        "waren",
        "hat",
        "haben",
        "hatte",
        "kann",
        "können",
        "muss",
        "müssen",
        "soll",
        "sollen",
        "dass",
        "damit",
        "dann",
        "denn",
        "weil",
        "hier",
        "dort",
        "heute",
    ]
)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def terms(text: str) -> list[str]:
    """The distinct terms of `text`, in order of first appearance, at most `MAX_TERMS`."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(_fold(text)):
        if word in STOP_WORDS:
            continue
        seen.setdefault(word[:STEM_LENGTH], None)
        if len(seen) >= MAX_TERMS:
            break
    return list(seen)


def jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)
