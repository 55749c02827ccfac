"""a notification keeps the trace context of the event's handling, for its send's span

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# A nullable column without a default: adding it rewrites nothing. IF NOT EXISTS: a database
# whose table was built from today's model already has it.


def upgrade() -> None:
    op.execute("ALTER TABLE notifications ADD COLUMN IF NOT EXISTS trace_context JSONB")


def downgrade() -> None:
    op.execute("ALTER TABLE notifications DROP COLUMN IF EXISTS trace_context")
