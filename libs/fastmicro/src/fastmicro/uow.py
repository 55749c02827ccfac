"""The unit of work: one transaction; with an outbox, the events it emits committed with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn, Self

from sqlalchemy import insert

from fastmicro.db import is_connection_error
from fastmicro.errors import ServiceUnavailable
from fastmicro.events import DomainEvent, Envelope
from fastmicro.outbox import outbox_rows, outbox_table

if TYPE_CHECKING:
    from types import TracebackType

    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


class UnitOfWork:
    """`async with uow:` opens a session; leaving without `commit()` discards the transaction.

    A database that cannot be reached surfaces as `ServiceUnavailable` (503), never as a bare
    driver error. A service that publishes events uses `OutboxUnitOfWork` instead.

    A service subclasses it to attach its repositories in `__aenter__`. One instance serves one
    request or one message: never share it (or its session) between concurrent tasks.
    """

    session: AsyncSession

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        #: What a service's read queries run on, outside any session (`fastmicro.db.driver_connection`).
        self.engine: AsyncEngine = session_factory.kw["bind"]

    async def __aenter__(self) -> Self:
        self.session = self._session_factory()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            # close() ends an uncommitted transaction (the connection rolls back on its way to the
            # pool) without expiring what was loaded: entities stay readable after the block.
            await self.session.close()
        except Exception as cleanup_error:  # noqa: BLE001 - re-raised, translated, unless another is in flight
            if exc is None:
                _reraise(cleanup_error)
        if exc is not None and not isinstance(exc, ServiceUnavailable) and is_connection_error(exc):
            raise ServiceUnavailable() from exc

    async def commit(self) -> None:
        try:
            await self._before_commit()
            await self.session.commit()
        except Exception as error:  # noqa: BLE001 - re-raised, translated
            _reraise(error)

    async def _before_commit(self) -> None:
        """What a subclass writes in the transaction just before it commits."""


class OutboxUnitOfWork(UnitOfWork):
    """A unit of work whose events go out through the outbox (the service's migrations create it).

    `emit(event)` queues an event; `commit()` inserts the queued events into the outbox in the
    same transaction as the state change, so either both happen or neither does.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(session_factory)
        self._pending: list[Envelope] = []

    async def __aenter__(self) -> Self:
        self._pending = []
        return await super().__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pending = []
        await super().__aexit__(exc_type, exc, tb)

    def emit(self, event: DomainEvent) -> Envelope:
        """Queue `event` for the outbox; it is written at `commit()` and published after it."""
        envelope = Envelope.wrap(event)
        self._pending.append(envelope)
        return envelope

    async def commit(self) -> None:
        await super().commit()
        self._pending = []

    async def _before_commit(self) -> None:
        if self._pending:
            await self.session.execute(insert(outbox_table), outbox_rows(self._pending))


def _reraise(error: Exception) -> NoReturn:
    if is_connection_error(error):
        raise ServiceUnavailable() from error
    raise error
