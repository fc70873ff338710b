"""outbox: until when a dead sender's call may still land

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 10:20:00

A post whose sender died mid-call is taken over before that call could time out (see
`feedbot.core.liveness`). The column says until when the call may still land, so the post
sent again is looked for once more at that moment, and a late copy deleted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("may_land_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_column("may_land_until")
