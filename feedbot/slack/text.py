"""User text in Slack messages: escaping, unescaping and bounding.

Slack's mrkdwn treats only `&`, `<` and `>` as control characters; mentions and broadcasts
exist only inside `<…>`. Escaping those three (ampersand first) makes any user text inert.
"""

from __future__ import annotations


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Message events arrive escaped; store what the person typed."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def shorten(text: str, limit: int, *, more: str = "…") -> str:
    """`text` cut to at most `limit` characters, marked when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(more), 0)].rstrip() + more


def quote(text: str, limit: int) -> str:
    """Escaped, bounded user text for a mrkdwn field. Bounded after escaping, since escaping
    lengthens the text; a cut never splits an entity like `&amp;`."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut.rstrip() + "…"
