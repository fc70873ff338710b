"""outbox: lanes and turns, so one person's many reports cannot hold up a colleague's card

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lane", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("turn", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.drop_index("ix_outbox_message_conversation")
        batch_op.create_index(
            "ix_outbox_message_conversation",
            ["status", "conversation", "lane", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_conversation")
        batch_op.create_index(
            "ix_outbox_message_conversation", ["status", "conversation", "id"], unique=False
        )
        batch_op.drop_column("turn")
        batch_op.drop_column("lane")
