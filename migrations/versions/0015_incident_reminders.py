"""incident reminders: incident groups are reminded and escalated like reports

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-02 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

URGENCY = sa.Enum("low", "normal", "high", "critical", name="urgency", native_enum=False, length=32)


def upgrade() -> None:
    with op.batch_alter_table("incident_group", schema=None) as batch_op:
        batch_op.add_column(sa.Column("urgency", URGENCY, nullable=False, server_default="normal"))
        batch_op.add_column(
            sa.Column("escalated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_incident_group_merged_into_id_incident_group"),
            "incident_group",
            ["merged_into_id"],
            ["id"],
        )
        batch_op.create_index(
            "ix_incident_group_ack_scan",
            ["status", "acknowledged_at", "escalated_at"],
            unique=False,
        )
    op.create_table(
        "incident_reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("next_due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident_group.id"],
            name=op.f("fk_incident_reminder_incident_id_incident_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["outbox_message.id"],
            name=op.f("fk_incident_reminder_message_id_outbox_message"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_reminder")),
        sa.UniqueConstraint(
            "incident_id", "kind", "sequence", name="uq_incident_reminder_incident_kind_sequence"
        ),
    )
    with op.batch_alter_table("incident_reminder", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_reminder_incident_id"), ["incident_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("incident_reminder", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_reminder_incident_id"))
    op.drop_table("incident_reminder")
    with op.batch_alter_table("incident_group", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_group_ack_scan")
        batch_op.drop_constraint(
            batch_op.f("fk_incident_group_merged_into_id_incident_group"), type_="foreignkey"
        )
        batch_op.drop_column("merged_into_id")
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("urgency")
