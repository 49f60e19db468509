"""Autovacuum `reports` by the number of its dead rows, not by their share of the table.

Every job leaves dead row versions behind (queued, running, each lease renewal), and their entries in the queue's
indexes (`ix_reports_queued`, `ix_reports_user_active`) stay until a VACUUM: the worker's claim and GET of a
queued report (its place) walk them, visiting each one's row. PostgreSQL's default autovacuum waits until dead
rows are 20 % of the table, and `reports` keeps every report it ever had (expired ones too): with 500,000 reports,
100,000 dead rows, some 30,000 jobs. With these options autovacuum takes the table once 2,000 rows are dead (some
700 jobs), at its next round (`autovacuum_naptime`, 1 minute by default), however large the table; a VACUUM reads
only the pages changed since the last one (the visibility map) and each index once (bench/bench_queue_churn.py).

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

QUEUE_AUTOVACUUM = {"autovacuum_vacuum_scale_factor": "0", "autovacuum_vacuum_threshold": "2000"}


def upgrade() -> None:
    options = ", ".join(f"{name} = {value}" for name, value in QUEUE_AUTOVACUUM.items())
    op.execute(f"ALTER TABLE reports SET ({options})")


def downgrade() -> None:
    op.execute(f"ALTER TABLE reports RESET ({', '.join(QUEUE_AUTOVACUUM)})")
