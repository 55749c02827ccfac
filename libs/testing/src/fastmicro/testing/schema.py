"""Do a service's migrations build what its models describe? For its migration tests."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from fastmicro.db import Base


def model_differences(connection: Connection, tables: Collection[str]) -> list[Any]:
    """What differs between the database and the models of `tables` (types included); [] when none.

    Only those tables: the kernel's metadata holds every kernel table (outbox, inbox, revocations),
    and a service creates only the ones it uses. For `await conn.run_sync(...)`.
    """

    def ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in tables

    context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": ours})
    return list(compare_metadata(context, Base.metadata))
