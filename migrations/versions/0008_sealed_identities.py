"""identity: anonymous reporters and me-toos stored only sealed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 14:00:00

The ids already stored in the clear are sealed with FEEDBOT_SECRET_KEY (handed to the
migration by `feedbot db upgrade`); a database with such rows cannot be upgraded without it.
Timeline entries of *me too* lose their actor, and links to the post an anonymous report
came from are dropped (a post names its author).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

report = sa.table(
    "report",
    sa.column("id", sa.Integer),
    sa.column("reporter_id", sa.String),
    sa.column("reporter_sealed", sa.String),
    sa.column("reporter_key", sa.String),
    sa.column("anonymous", sa.Boolean),
    sa.column("source_channel", sa.String),
    sa.column("source_ts", sa.String),
    sa.column("source_permalink", sa.String),
)
me_too = sa.table(
    "me_too",
    sa.column("id", sa.Integer),
    sa.column("report_id", sa.Integer),
    sa.column("user_id", sa.String),
    sa.column("user_sealed", sa.String),
    sa.column("user_key", sa.String),
)
timeline = sa.table(
    "timeline_entry", sa.column("action", sa.String), sa.column("actor_id", sa.String)
)


def _identities():  # type: ignore[no-untyped-def]
    from feedbot.core.identity import Identities

    secret = op.get_context().config.attributes.get("secret_key")
    if not secret:
        raise RuntimeError(
            "this database holds anonymous reporters or me-toos to seal: set FEEDBOT_SECRET_KEY "
            "(`feedbot secret-key --ensure .env` makes one) and run `feedbot db upgrade` again"
        )
    return Identities(secret)


def upgrade() -> None:
    # Read and check first: SQLite runs each schema change on its own, so a refusal must
    # come before the first one.
    bind = op.get_bind()
    anonymous = bind.execute(
        sa.select(report.c.id, report.c.reporter_id).where(
            report.c.anonymous.is_(True), report.c.reporter_id.is_not(None)
        )
    ).all()
    me_toos = bind.execute(sa.select(me_too.c.id, me_too.c.report_id, me_too.c.user_id)).all()
    identities = _identities() if anonymous or me_toos else None

    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "reporter_sealed", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("reporter_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_report_reporter_key"), ["reporter_key"], unique=False)
    with op.batch_alter_table("me_too", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("user_sealed", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
        batch_op.add_column(
            sa.Column("user_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )

    if identities is not None:
        for report_id, user_id in anonymous:
            bind.execute(
                report.update()
                .where(report.c.id == report_id)
                .values(
                    reporter_id=None,
                    reporter_sealed=identities.seal(user_id),
                    reporter_key=identities.reporter_key(user_id),
                )
            )
        for row_id, report_id, user_id in me_toos:
            bind.execute(
                me_too.update()
                .where(me_too.c.id == row_id)
                .values(
                    user_sealed=identities.seal(user_id),
                    user_key=identities.me_too_key(report_id, user_id),
                )
            )
    bind.execute(
        report.update()
        .where(report.c.anonymous.is_(True))
        .values(source_permalink=None, source_channel=None, source_ts=None)
    )
    bind.execute(timeline.update().where(timeline.c.action == "me_too").values(actor_id=None))

    with op.batch_alter_table("me_too", schema=None) as batch_op:
        batch_op.drop_constraint("uq_me_too_report_user", type_="unique")
        batch_op.drop_index("ix_me_too_user_id")
        batch_op.drop_column("user_id")
        batch_op.alter_column(
            "user_sealed",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=255),
            nullable=False,
        )
        batch_op.alter_column(
            "user_key", existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        )
        batch_op.create_unique_constraint("uq_me_too_report_user_key", ["report_id", "user_key"])


def downgrade() -> None:
    """Back to the schema before; sealed ids cannot come back in the clear and are dropped."""
    op.execute(me_too.delete())
    with op.batch_alter_table("me_too", schema=None) as batch_op:
        batch_op.drop_constraint("uq_me_too_report_user_key", type_="unique")
        batch_op.add_column(
            sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        )
        batch_op.drop_column("user_key")
        batch_op.drop_column("user_sealed")
        batch_op.create_index("ix_me_too_user_id", ["user_id"], unique=False)
        batch_op.create_unique_constraint("uq_me_too_report_user", ["report_id", "user_id"])
    with op.batch_alter_table("report", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_reporter_key"))
        batch_op.drop_column("reporter_key")
        batch_op.drop_column("reporter_sealed")
