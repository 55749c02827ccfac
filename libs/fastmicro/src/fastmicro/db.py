"""Engine, sessions, the declarative base and the mixins every entity uses."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import DateTime, MetaData, event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fastmicro.errors import ServiceUnavailable
from fastmicro.metrics import DB_POOL_IN_USE
from fastmicro.pool import FairAsyncQueuePool

if TYPE_CHECKING:
    from fastmicro.settings import ServiceSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UUIDPrimaryKey:
    """A UUID id made by the application, so an entity has its id before any round trip."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("id", uuid.uuid4())
        super().__init__(**kwargs)


class Timestamps:
    """Set in Python, not by the server: no RETURNING or refresh is needed to read them."""

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def create_engine(settings: ServiceSettings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        poolclass=FairAsyncQueuePool,  # waiters served in order: no request waits many turns
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # Not SQLAlchemy's pre-ping: on asyncpg it costs three round trips (BEGIN, a query,
        # ROLLBACK) on every checkout. `_drop_closed` below does its work without any.
        pool_pre_ping=False,
        connect_args={
            "timeout": settings.db_connect_timeout,
            "server_settings": {
                "application_name": settings.service_name,
                "statement_timeout": str(settings.db_statement_timeout_ms),
            },
        },
    )
    event.listen(engine.sync_engine, "checkout", _drop_closed)
    # Each process counts its own checkouts (summed across `serve --workers` by the gauge's mode).
    event.listen(engine.sync_engine, "checkin", _count_checkin)
    return engine


def _count_checkin(_dbapi_connection: Any, _record: Any) -> None:
    DB_POOL_IN_USE.dec()


def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A connection that died with the database is replaced instead of failing a request.

    asyncpg learns that the server or the network closed a connection as soon as the event loop
    sees the socket close, even while the connection idles in the pool; the pool then discards it
    and checks out another (SQLAlchemy's pessimistic disconnect handling, without a round trip).
    """
    if dbapi_connection.driver_connection.is_closed():
        raise exc.DisconnectionError("the connection was closed while it was idle in the pool")
    DB_POOL_IN_USE.inc()  # here, past the check: a refused checkout is never given back


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Entities stay readable after commit: responses are built from them without a reload.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection as asyncpg's own, outside any transaction: for hot paths that need none of the ORM.

    The hot reads (a resource by id) pay for no session, unit of work, BEGIN or ROLLBACK: one
    round trip per query, which asyncpg prepares once per connection. Each query reads what was
    committed when it started. A path that writes opens its own transaction on it
    (`connection.transaction()`, as the outbox relay does). An unreachable database surfaces as
    `ServiceUnavailable` (503), and a connection that failed is dropped from the pool rather than
    handed out again.
    """
    try:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            try:
                yield raw.driver_connection
            except Exception as error:
                if is_connection_error(error):
                    await connection.invalidate()
                raise
    except Exception as error:
        if is_connection_error(error):
            raise ServiceUnavailable() from error
        raise


def is_connection_error(error: BaseException) -> bool:
    """True when `error` means the database could not be reached, not that a statement was wrong."""
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        return isinstance(error, (exc.OperationalError, exc.InterfaceError)) or _is_transport(error.orig)
    if isinstance(error, exc.TimeoutError):  # waiting for a pooled connection
        return True
    return _is_transport(error)


_TRANSPORT_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # includes "connection is closed"
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,  # the server refused a new connection (max_connections): away for us
)


def _is_transport(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, _TRANSPORT_ERRORS):
            return True
        error = error.__cause__
    return False


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE PostgreSQL (or asyncpg, for an argument it cannot encode) gave `error`, if any.

    Looks through SQLAlchemy's wrapper and the chain of causes, so it works on either.
    """
    seen: BaseException | None = error.orig if isinstance(error, exc.DBAPIError) and error.orig else error
    while seen is not None:
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
        seen = seen.__cause__
    return None


def is_data_error(error: BaseException) -> bool:
    """True for SQLSTATE class 22, "data exception": the values themselves cannot be stored
    (a NUL in text, text longer than its column, a number out of range), so no retry can help."""
    state = sqlstate_of(error)
    return state is not None and state.startswith("22")


def unique_violation(error: exc.IntegrityError) -> str | None:
    """The name of the unique constraint `error` violated, or None for any other integrity error."""
    cause = error.orig.__cause__ if error.orig is not None else None
    if getattr(cause, "sqlstate", None) == "23505":
        name = getattr(cause, "constraint_name", None)
        return str(name) if name else None
    return None
