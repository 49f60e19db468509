"""An index of each user's active (queued or running) reports.

`POST /v1/reports` counts the caller's active reports against MAX_ACTIVE_REPORTS_PER_USER. Through the
user's index of all reports that count reads the user's whole history (every finished report still kept);
this partial index holds only the active rows, so the count reads at most the limit's worth.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('queued', 'running')"


def upgrade() -> None:
    op.create_index("ix_reports_user_active", "reports", ["user_id"], postgresql_where=sa.text(ACTIVE))


def downgrade() -> None:
    op.drop_index("ix_reports_user_active", table_name="reports")
