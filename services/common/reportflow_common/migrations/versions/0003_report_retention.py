"""Report retention: `expires_at` on reports and the status `expired`.

Every report that has ended gets `expires_at` = finished_at (or, lacking it, created_at) + the retention
(REPORT_RETENTION_DAYS, or REPORT_RETENTION_SECONDS, as reportflow-migrate reads them); active reports get
theirs when they end. Downgrading deletes the `expired` reports: the previous version has no such status,
and their files are already gone.

Revision ID: 0003
Revises: 0002
"""
from datetime import timedelta

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DEFAULT_RETENTION = timedelta(days=7)  # REPORT_RETENTION_DAYS's default, when no setting is handed in
ENDED = "status IN ('succeeded', 'failed', 'cancelled')"
STATUSES_BEFORE = "status IN ('queued','running','succeeded','failed','cancelled')"
STATUSES_AFTER = "status IN ('queued','running','succeeded','failed','cancelled','expired')"


def _retention() -> timedelta:
    """The retention reportflow-migrate was started with (migrate.upgrade hands it in)."""
    return context.config.attributes.get("report_retention", DEFAULT_RETENTION)


def upgrade() -> None:
    op.add_column("reports", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.drop_constraint("ck_reports_status", "reports", type_="check")
    op.create_check_constraint("ck_reports_status", "reports", sa.text(STATUSES_AFTER))
    op.get_bind().execute(sa.text(
        "UPDATE reports SET expires_at = COALESCE(finished_at, created_at) + :retention"
        " WHERE status IN ('succeeded', 'failed', 'cancelled')"), {"retention": _retention()})
    op.create_index("ix_reports_expiring", "reports", ["expires_at"], postgresql_where=sa.text(ENDED))
    op.create_index("ix_reports_expired_with_file", "reports", ["id"],
                    postgresql_where=sa.text("status = 'expired' AND storage_key IS NOT NULL"))
    op.create_index("ix_reports_ended_undated", "reports", ["id"],
                    postgresql_where=sa.text(f"expires_at IS NULL AND {ENDED}"))


def downgrade() -> None:
    op.drop_index("ix_reports_ended_undated", table_name="reports")
    op.drop_index("ix_reports_expired_with_file", table_name="reports")
    op.drop_index("ix_reports_expiring", table_name="reports")
    op.execute("DELETE FROM reports WHERE status = 'expired'")
    op.drop_constraint("ck_reports_status", "reports", type_="check")
    op.create_check_constraint("ck_reports_status", "reports", sa.text(STATUSES_BEFORE))
    op.drop_column("reports", "expires_at")
