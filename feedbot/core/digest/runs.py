"""Exactly once: the run row that decides between replicas and restarts."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from feedbot.errors import Conflict
from feedbot.models import (
    DigestRun,
)


def already_sent(session: Session, *, kind: str, channel: str, period: str) -> bool:
    return (
        session.exec(
            select(DigestRun.id).where(
                DigestRun.kind == kind, DigestRun.channel == channel, DigestRun.period == period
            )
        ).first()
        is not None
    )


def claim_run(
    session: Session,
    *,
    kind: str,
    channel: str,
    period: str,
    now: datetime,
    late: bool = False,
    force: bool = False,
) -> DigestRun:
    """Record that this digest is being sent, or raise `Conflict` if someone already did.

    The caller queues the digest's messages in the same transaction: the unique key on
    (kind, channel, period) then makes the whole send happen once, whichever process or
    replica gets there first (the other's flush raises `IntegrityError`, and its whole
    transaction rolls back). `force` sends again and marks the existing run as forced.
    """
    existing = session.exec(
        select(DigestRun).where(
            DigestRun.kind == kind, DigestRun.channel == channel, DigestRun.period == period
        )
    ).first()
    if existing is not None:
        if not force:
            raise Conflict(
                f"the {kind} digest of {period} was already sent to {channel} "
                f"({existing.created_at:%Y-%m-%d %H:%M} UTC); use --force to send it again",
                code="digest_already_sent",
            )
        existing.forced = True
        existing.created_at = now
        session.add(existing)
        session.flush()
        return existing
    run = DigestRun(kind=kind, channel=channel, period=period, created_at=now, late=late)
    session.add(run)
    session.flush()  # a concurrent sender's row makes this raise IntegrityError
    return run
