"""orders, order items, deleted users, the placing lock, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fastmicro.consumer import create_inbox, drop_inbox
from fastmicro.outbox import create_outbox, drop_outbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Placing an order takes the user's advisory lock shared, then checks deleted_users in a statement
# of its own (so with a snapshot taken after the lock was granted): a UserDeleted being handled
# (which takes the same lock exclusively) is either waited for and seen, or waits for the order
# and cancels it. One round trip for the service. The key must match the handler's
# (orders.repository): hashtextextended(<user id as text>, 0).
LOCK_USER_FOR_PLACING = """
CREATE FUNCTION lock_user_for_placing(p_user_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_user_id::text, 0));
    RETURN EXISTS (SELECT 1 FROM deleted_users WHERE user_id = p_user_id);
END $$
"""


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("cancel_reason", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.CheckConstraint("status IN ('placed', 'cancelled')", name=op.f("ck_orders_status")),
        sa.CheckConstraint(
            "(status = 'placed' AND cancel_reason IS NULL)"
            " OR (status = 'cancelled' AND cancel_reason IN ('requested', 'user_deleted'))",
            name=op.f("ck_orders_cancel_reason"),
        ),
        sa.CheckConstraint("total >= 0", name=op.f("ck_orders_total_not_negative")),
    )
    op.create_index(
        "ix_orders_user_id_created_at",
        "orders",
        ["user_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    )
    op.create_table(
        "order_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("line_total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_items")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_items_order_id_orders"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("order_id", "position", name=op.f("uq_order_items_order_id")),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_order_items_quantity_positive")),
        sa.CheckConstraint("unit_price >= 0", name=op.f("ck_order_items_unit_price_not_negative")),
        sa.CheckConstraint("line_total = quantity * unit_price", name=op.f("ck_order_items_line_total")),
    )
    op.create_table(
        "deleted_users",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_deleted_users")),
    )
    op.execute(LOCK_USER_FOR_PLACING)
    create_outbox(op.get_bind())
    create_inbox(op.get_bind())


def downgrade() -> None:
    drop_inbox(op.get_bind())
    drop_outbox(op.get_bind())
    op.execute("DROP FUNCTION lock_user_for_placing(uuid)")
    op.drop_table("deleted_users")
    op.drop_table("order_items")
    op.drop_index("ix_orders_user_id_created_at", table_name="orders")
    op.drop_table("orders")
