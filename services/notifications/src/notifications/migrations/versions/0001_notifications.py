"""contacts, notifications (with the sender's NOTIFY trigger) and the consumer's inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fastmicro.consumer import create_inbox, drop_inbox
from notifications.repository import PENDING_CHANNEL

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_contacts"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("event_id", name="uq_notifications_event_id"),
        sa.CheckConstraint(
            "kind IN ('welcome', 'order_placed', 'order_cancelled', 'account_updated')",
            name="ck_notifications_kind",
        ),
        sa.CheckConstraint("channel IN ('email')", name="ck_notifications_channel"),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_notifications_status"),
    )
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_notifications_user_recent",
        "notifications",
        ["user_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    # The sender LISTENs on this channel. Statement-level: one NOTIFY per INSERT statement,
    # delivered by PostgreSQL at commit, and only if the transaction commits.
    op.execute(
        f"""
CREATE FUNCTION notifications_pending_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{PENDING_CHANNEL}', '');
    RETURN NULL;
END $$
"""
    )
    op.execute(
        "CREATE TRIGGER notifications_pending_notify AFTER INSERT ON notifications "
        "FOR EACH STATEMENT EXECUTE FUNCTION notifications_pending_notify()"
    )
    create_inbox(op.get_bind())


def downgrade() -> None:
    drop_inbox(op.get_bind())
    op.execute("DROP TRIGGER IF EXISTS notifications_pending_notify ON notifications")
    op.execute("DROP FUNCTION IF EXISTS notifications_pending_notify()")
    op.drop_index("ix_notifications_user_recent", table_name="notifications")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("contacts")
