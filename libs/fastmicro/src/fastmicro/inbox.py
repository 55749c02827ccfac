"""The inbox: which messages each handler already handled, committed with the handler's effects."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import DateTime, String, bindparam
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from fastmicro.db import Base, utcnow


class InboxMessage(Base):
    """Messages already handled, per handler: the dedup row commits with the handler's effects."""

    __tablename__ = "inbox"

    message_id: Mapped[UUID] = mapped_column(primary_key=True)
    handler: Mapped[str] = mapped_column(String(200), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


inbox_table = InboxMessage.metadata.tables["inbox"]

#: Built once: each message only binds its values (and SQLAlchemy's compiled cache does the rest).
#: Returns the message id when the row is new, nothing when the handler already ran.
CLAIM_INBOX = (
    insert(inbox_table)
    .values(message_id=bindparam("message_id"), handler=bindparam("handler"), processed_at=bindparam("processed_at"))
    .on_conflict_do_nothing()
    .returning(inbox_table.c.message_id)
)


def create_inbox(bind: Connection) -> None:
    """For a consuming service's Alembic migration: `create_inbox(op.get_bind())`."""
    inbox_table.create(bind)


def drop_inbox(bind: Connection) -> None:
    inbox_table.drop(bind)
