"""revoked subjects: the deleted users whose tokens get 401

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from fastmicro.revocation import create_revocations, drop_revocations

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_revocations(op.get_bind())


def downgrade() -> None:
    drop_revocations(op.get_bind())
