"""the outbox keeps the trace context of the transaction that wrote each row

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# On a fresh database 0001's create_outbox already added the column (it builds today's table),
# hence IF NOT EXISTS. A nullable column without a default: adding it rewrites nothing.


def upgrade() -> None:
    op.execute("ALTER TABLE outbox ADD COLUMN IF NOT EXISTS trace_context JSONB")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN IF EXISTS trace_context")
