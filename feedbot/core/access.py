"""Whether Slack still accepts feedbot's bot token.

When the app is uninstalled or its token revoked, Slack refuses every call. feedbot then
keeps taking reports and queueing what it owes, but sends nothing until a token works
again: the token is recorded here by fingerprint (a hash, never the token), so every process
using it pauses, and a process given a new token resumes at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from feedbot.db import upsert_insert
from feedbot.models import RevokedToken


def fingerprint(token: str) -> str:
    """A stable name for a token that reveals nothing of it."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Revocation:
    revoked_at: datetime
    reason: str


def revoke(session: Session, *, token: str, reason: str, now: datetime) -> None:
    """Record that Slack no longer accepts `token` (the first reason recorded stays)."""
    session.execute(
        upsert_insert(session, RevokedToken)
        .values(fingerprint=fingerprint(token), revoked_at=now, reason=reason[:200])
        .on_conflict_do_nothing(index_elements=["fingerprint"])
    )


def restore(session: Session, *, token: str) -> None:
    """`token` works again (Slack said so)."""
    session.execute(delete(RevokedToken).where(col(RevokedToken.fingerprint) == fingerprint(token)))


def revocation(session: Session, *, token: str) -> Revocation | None:
    """Why `token` no longer works, or None while it does."""
    row = session.exec(
        select(RevokedToken).where(col(RevokedToken.fingerprint) == fingerprint(token))
    ).first()
    return Revocation(row.revoked_at, row.reason) if row is not None else None
