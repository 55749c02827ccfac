"""Waiting for what a database promises: that a transaction now waits for a lock another one holds."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

_ADVISORY_WAITERS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def wait_for_an_advisory_lock_waiter(engine: AsyncEngine, within: float = 10.0) -> None:
    """Until a transaction of `engine`'s database waits for an advisory lock another one holds.

    What a test of serialisation waits on before it lets the holder go: the second request is then
    provably queued behind the first, whatever the scheduler did.
    """
    async with asyncio.timeout(within):
        while True:
            async with engine.connect() as conn:
                if await conn.scalar(_ADVISORY_WAITERS):
                    return
            await asyncio.sleep(0.05)
