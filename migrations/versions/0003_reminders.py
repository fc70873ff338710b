"""reminders: messages of each reminder, when the next is due, indexes of the scan

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:23:34.838721
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE_FK = "fk_reminder_message_id_outbox_message"


def upgrade() -> None:
    op.create_table(
        "reminder_message",
        sa.Column("reminder_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["outbox_message.id"],
            name=op.f("fk_reminder_message_message_id_outbox_message"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reminder_id"],
            ["reminder.id"],
            name=op.f("fk_reminder_message_reminder_id_reminder"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reminder_id", "message_id", name=op.f("pk_reminder_message")),
    )
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(
            "ix_reminder_next_due", ["report_id", "kind", "next_due_at"], unique=False
        )
        batch_op.create_index("ix_reminder_pending", ["kind", "next_due_at"], unique=False)
        # The outbox prunes delivered messages after 30 days; a reminder keeps its row.
        batch_op.drop_constraint(MESSAGE_FK, type_="foreignkey")
        batch_op.create_foreign_key(
            MESSAGE_FK, "outbox_message", ["message_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.create_index(
            "ix_report_ack_scan",
            ["status", "acknowledged_at", "escalated_at", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_report_follow_up_scan",
            ["status", "follow_up_at", "escalated_at", "snoozed_until", "owner_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_report_callback_scan",
            ["callback_requested", "customer_called_at", "status", "owner_id", "snoozed_until"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.drop_index("ix_report_callback_scan")
        batch_op.drop_index("ix_report_follow_up_scan")
        batch_op.drop_index("ix_report_ack_scan")
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.drop_constraint(MESSAGE_FK, type_="foreignkey")
        batch_op.create_foreign_key(MESSAGE_FK, "outbox_message", ["message_id"], ["id"])
        batch_op.drop_index("ix_reminder_pending")
        batch_op.drop_index("ix_reminder_next_due")
        batch_op.drop_column("next_due_at")
    op.drop_table("reminder_message")
