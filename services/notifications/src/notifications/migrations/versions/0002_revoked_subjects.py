"""revoked subjects: the deleted users whose tokens get 401

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from fastmicro.revocation import create_revocations, drop_revocations

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_revocations(op.get_bind())


def downgrade() -> None:
    drop_revocations(op.get_bind())
