"""Retention: deletes published outbox rows, processed inbox rows and expired idempotency keys once old enough.

Both tables would otherwise grow forever. A purge deletes in batches, one short transaction
each, oldest rows first in index order. The victims are claimed with `FOR UPDATE SKIP LOCKED`,
so several replicas purging at once split the work instead of waiting on each other; a
row is deleted by its `ctid`, which cannot move while the same statement holds its lock.
Unpublished outbox rows are never touched, whatever their age: they are work still to do.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import TextClause, exc, text

from fastmicro.backoff import Backoff
from fastmicro.metrics import RETENTION_PURGED

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger(__name__)


def _purge(table: str, stamped: str) -> TextClause:
    """Delete up to :batch_size rows of `table` whose `stamped` is older than :age_seconds."""
    # The victims claimed in index order and skipped where another purger holds them; deleted by ctid.
    statement = (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table}"  # noqa: S608 - module constants, never input
        f" WHERE {stamped} < now() - make_interval(secs => :age_seconds)"
        " LIMIT :batch_size FOR UPDATE SKIP LOCKED))"
    )
    return text(statement)


# published_at < ... implies published_at IS NOT NULL: the planner uses the partial ix_outbox_published.
PURGE_OUTBOX = _purge("outbox", "published_at")
PURGE_INBOX = _purge("inbox", "processed_at")
PURGE_IDEMPOTENCY_KEYS = _purge("idempotency_keys", "created_at")

_UNDEFINED_TABLE = "42P01"


@dataclass(frozen=True)
class _Target:
    table: str
    statement: TextClause
    retention: timedelta


class RetentionPurger:
    """Purges what is past retention every `interval` seconds. Safe to run in several replicas.

    `outbox_retention` / `inbox_retention` / `idempotency_retention` set to None leave that table
    alone: a service purges only the tables it has. A table that does not exist (yet) is skipped, not retried.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        outbox_retention: timedelta | None = None,
        inbox_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        interval: float = 300.0,
        batch_size: int = 1000,
        max_backoff: float = 30.0,
    ) -> None:
        targets = [
            _Target(table, statement, retention)
            for table, statement, retention in (
                ("outbox", PURGE_OUTBOX, outbox_retention),
                ("inbox", PURGE_INBOX, inbox_retention),
                ("idempotency_keys", PURGE_IDEMPOTENCY_KEYS, idempotency_retention),
            )
            if retention is not None
        ]
        if not targets:
            raise ValueError("a retention purger needs at least one table to purge")
        self._engine = engine
        self._targets = tuple(targets)
        self._interval = interval
        self._batch_size = batch_size
        # After a failure never wait longer than a healthy purger would.
        self._max_backoff = min(max_backoff, interval)
        self._stopping = asyncio.Event()
        self._missing: set[str] = set()

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(target.table for target in self._targets)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Purge at once, then every `interval`, until `stop()`; back off while the database fails."""
        backoff = Backoff("retention_purge_failed", cap=self._max_backoff, logger=log)
        while not self._stopping.is_set():
            try:
                deleted = await self.purge()
            except Exception as error:  # noqa: BLE001 - any fault: back off and try again, never crash
                await self._sleep(backoff.failed(error))
                continue
            backoff.succeeded()
            if any(deleted.values()):
                log.info("retention_purged", **deleted)
            await self._sleep(self._interval)

    async def purge(self) -> dict[str, int]:
        """Delete every row past retention, batch by batch. Returns how many rows went, per table."""
        return {target.table: await self._purge(target) for target in self._targets}

    async def _purge(self, target: _Target) -> int:
        params = {"age_seconds": target.retention.total_seconds(), "batch_size": self._batch_size}
        total = 0
        while not self._stopping.is_set():
            try:
                async with self._engine.begin() as conn:
                    deleted = (await conn.execute(target.statement, params)).rowcount
            except exc.ProgrammingError as error:
                if _sqlstate(error) != _UNDEFINED_TABLE:
                    raise
                if target.table not in self._missing:
                    self._missing.add(target.table)
                    log.warning("retention_table_missing", table=target.table)
                return total
            self._missing.discard(target.table)
            total += deleted
            RETENTION_PURGED.labels(target.table).inc(deleted)
            if deleted < self._batch_size:  # the last batch (or rows another replica holds: next time)
                return total
        return total

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _sqlstate(error: exc.DBAPIError) -> str | None:
    cause = error.orig.__cause__ if error.orig is not None else None
    state = getattr(cause, "sqlstate", None)
    return str(state) if state else None
