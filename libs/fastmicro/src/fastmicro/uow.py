"""The unit of work: one transaction; with an outbox, the events it emits committed with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn, Self

import structlog
from sqlalchemy import insert

from fastmicro.db import is_connection_error
from fastmicro.errors import AppError, ServiceUnavailable
from fastmicro.events import DomainEvent, Envelope
from fastmicro.outbox import outbox_rows, outbox_table

if TYPE_CHECKING:
    from types import TracebackType

    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from fastmicro.idempotency import IdempotentRequest

log = structlog.get_logger(__name__)


class UnitOfWork:
    """`async with uow:` opens a session; leaving without `commit()` discards the transaction.

    A database that cannot be reached surfaces as `ServiceUnavailable` (503), never as a bare
    driver error. A service that publishes events uses `OutboxUnitOfWork` instead.

    A service subclasses it to attach its repositories in `__aenter__`. One instance serves one
    request or one message: never share it (or its session) between concurrent tasks.

    `async with uow.once(key)` runs it under a client's Idempotency-Key (fastmicro.idempotency):
    entering claims the key, and `commit(answer=...)` stores the answer with the work.
    """

    session: AsyncSession

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        #: What a service's read queries run on, outside any session (`fastmicro.db.driver_connection`).
        self.engine: AsyncEngine = session_factory.kw["bind"]
        self._idempotency: IdempotentRequest | None = None

    def once(self, request: IdempotentRequest | None) -> Self:
        """This unit of work under `request`'s key (None: no key, nothing changes)."""
        self._idempotency = request
        return self

    async def __aenter__(self) -> Self:
        self.session = self._session_factory()
        if self._idempotency is not None:
            try:
                await self._idempotency.claim(self.session)  # first: it may wait for, or replay, another
            except BaseException as error:
                await self.__aexit__(type(error), error, error.__traceback__)
                raise
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
        request, self._idempotency = self._idempotency, None
        if request is not None and request.stores(exc):
            await self._store_client_error(request, exc)

    async def commit(self, *, answer: Any = None) -> None:
        """Commit; under a key, `answer` (what the use case returns) is stored with the work."""
        if self._idempotency is not None:
            if answer is None:
                raise TypeError("a unit of work under an Idempotency-Key commits with the answer to store")
            await self._idempotency.record(self.session, self._idempotency.success(answer))
        try:
            await self._before_commit()
            await self.session.commit()
        except Exception as error:  # noqa: BLE001 - re-raised, translated
            _reraise(error)

    async def _before_commit(self) -> None:
        """What a subclass writes in the transaction just before it commits."""

    async def _store_client_error(self, request: IdempotentRequest, error: BaseException | None) -> None:
        if not isinstance(error, AppError):  # request.stores() said it is one
            return
        try:
            await request.record_alone(self.engine, request.failure(error))
        except Exception as failure:  # noqa: BLE001 - the client still gets its answer; a retry re-asks
            log.warning("idempotency_answer_not_stored", code=error.code, error_type=type(failure).__name__)


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

    async def commit(self, *, answer: Any = None) -> None:
        await super().commit(answer=answer)
        self._pending = []

    async def _before_commit(self) -> None:
        if self._pending:
            await self.session.execute(insert(outbox_table), outbox_rows(self._pending))


def _reraise(error: Exception) -> NoReturn:
    if is_connection_error(error):
        raise ServiceUnavailable() from error
    raise error
