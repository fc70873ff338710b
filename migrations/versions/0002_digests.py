"""digests: indexes on report for the weekly digest's queries

The `digest_run` table (exactly once per kind, channel and week) came with 0001. This adds
the indexes that keep a digest's counts and percentiles to the week's own rows:
acknowledgements in a week, resolutions in a week (and open-at-a-moment counts), open reports
by urgency, and reports per week and category for the trend chart (covering, so no table
reads).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 18:23:33.833037
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.create_index(
            "ix_report_acknowledged_at", ["acknowledged_at", "status", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_report_status_resolved", ["status", "resolved_at", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_report_status_urgency_created", ["status", "urgency", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_report_status_created_category",
            ["status", "created_at", "category"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.drop_index("ix_report_status_created_category")
        batch_op.drop_index("ix_report_status_urgency_created")
        batch_op.drop_index("ix_report_status_resolved")
        batch_op.drop_index("ix_report_acknowledged_at")
