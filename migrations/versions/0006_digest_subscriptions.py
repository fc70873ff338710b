"""digests: since when each channel gets one

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00

Existing channels count from the moment their setting was last changed, which is when an
admin configured them.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SETTINGS = {"leadership_channel": "leadership", "allstaff_channel": "allstaff"}


def upgrade() -> None:
    table = op.create_table(
        "digest_subscription",
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "channel", name=op.f("pk_digest_subscription")),
    )
    config = sa.table(
        "config_entry",
        sa.column("key", sa.String),
        sa.column("value", sa.String),
        sa.column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime()),
    )
    rows = op.get_bind().execute(
        sa.select(config.c.key, config.c.value, config.c.updated_at).where(
            config.c.key.in_(list(SETTINGS))
        )
    )
    subscriptions = [
        {"kind": SETTINGS[key], "channel": json.loads(value), "since": updated_at}
        for key, value, updated_at in rows
        if isinstance(json.loads(value), str)
    ]
    if subscriptions:
        op.bulk_insert(table, subscriptions)


def downgrade() -> None:
    op.drop_table("digest_subscription")
