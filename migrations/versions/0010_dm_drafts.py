"""conversation: direct messages waiting for their author to say what they are

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dm_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_sealed", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("origin_sealed", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dm_draft")),
    )
    with op.batch_alter_table("dm_draft", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dm_draft_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_dm_draft_user_key"), ["user_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dm_draft", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dm_draft_user_key"))
        batch_op.drop_index(batch_op.f("ix_dm_draft_created_at"))
    op.drop_table("dm_draft")
