"""idempotency keys: each Idempotency-Key's first answer, stored with the work it did

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from fastmicro.idempotency import create_idempotency_keys, drop_idempotency_keys

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_idempotency_keys(op.get_bind())


def downgrade() -> None:
    drop_idempotency_keys(op.get_bind())
