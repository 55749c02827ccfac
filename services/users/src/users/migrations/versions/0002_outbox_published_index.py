"""index published outbox rows, for retention

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# On a fresh database 0001's create_outbox already built the index (it builds today's table),
# hence IF NOT EXISTS. On an existing one the outbox may be large (retention is new):
# CONCURRENTLY builds the index without blocking the writes that insert into the outbox.


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_outbox_published ON outbox (published_at)"
            " WHERE published_at IS NOT NULL"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_outbox_published")
