"""Durable jobs: attempt tokens and leases on reports, the doorbell time, and the terminal event outbox.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reports", sa.Column("attempt_token", postgresql.UUID(as_uuid=True)))
    op.add_column("reports", sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
    op.add_column("reports", sa.Column("rung_at", sa.DateTime(timezone=True)))
    # Jobs a worker of the previous version is running have no lease: give them one long enough to finish
    # during a rolling upgrade; the reconciler takes back those whose worker is gone after it.
    op.execute("UPDATE reports SET lease_expires_at = now() + interval '15 minutes' WHERE status = 'running'")
    op.execute("UPDATE reports SET rung_at = created_at WHERE status = 'queued'")
    op.create_index("ix_reports_queued", "reports", ["created_at", "id"],
                    postgresql_where=sa.text("status = 'queued'"))
    op.create_index("ix_reports_running_lease", "reports", ["lease_expires_at"],
                    postgresql_where=sa.text("status = 'running'"))
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("report_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_event_outbox_unpublished", "event_outbox", ["id"],
                    postgresql_where=sa.text("published_at IS NULL"))


def downgrade() -> None:
    op.drop_table("event_outbox")
    op.drop_index("ix_reports_running_lease", table_name="reports")
    op.drop_index("ix_reports_queued", table_name="reports")
    op.drop_column("reports", "rung_at")
    op.drop_column("reports", "lease_expires_at")
    op.drop_column("reports", "attempt_token")
