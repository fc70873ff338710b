"""incidents: groups of similar reports that arrive in a burst

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS = sa.Enum(
    "open",
    "acknowledged",
    "resolved",
    "duplicate",
    name="reportstatus",
    native_enum=False,
    length=32,
)


def upgrade() -> None:
    op.create_table(
        "incident_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("example", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("leadership_channel", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("acknowledged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("resolved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("resolution_note", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("card_message_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["card_message_id"],
            ["outbox_message.id"],
            name=op.f("fk_incident_group_card_message_id_outbox_message"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_group")),
    )
    with op.batch_alter_table("incident_group", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_group_created_at"), ["created_at"], unique=False
        )
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.add_column(sa.Column("incident_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_report_incident_id"), ["incident_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_report_incident_id_incident_group"),
            "incident_group",
            ["incident_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_report_incident_id_incident_group"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_report_incident_id"))
        batch_op.drop_column("incident_id")
    with op.batch_alter_table("incident_group", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_group_created_at"))
    op.drop_table("incident_group")
