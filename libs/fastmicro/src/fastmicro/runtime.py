"""The composition root's shared parts: what one service process holds for its whole life."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from aio_pika.abc import AbstractRobustChannel

from fastmicro.consumer import EventConsumer, Subscription
from fastmicro.db import create_engine, create_session_factory
from fastmicro.messaging import Broker, Publisher, Topology
from fastmicro.outbox import OutboxRelay
from fastmicro.retention import RetentionPurger
from fastmicro.tokens import TokenVerifier

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from fastmicro.settings import ServiceSettings
    from fastmicro.uow import UnitOfWork

UowT = TypeVar("UowT", bound="UnitOfWork")


class BackgroundRole(Protocol):
    """A long-running part of a service (outbox relay, consumer, retention): `run()` until `stop()`."""

    async def run(self) -> None: ...
    def stop(self) -> None: ...


@runtime_checkable
class DeclaresTopology(Protocol):
    """A role with queues of its own, declared ahead by `python -m <svc> topology`."""

    @property
    def queue_names(self) -> list[str]: ...

    async def declare(self, channel: AbstractRobustChannel) -> Any: ...


RolesFactory = Callable[["Runtime"], Sequence[BackgroundRole]]


@dataclass
class Runtime:
    settings: ServiceSettings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    broker: Broker
    publisher: Publisher
    tokens: TokenVerifier

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Runtime:
        engine = create_engine(settings)
        broker = Broker(settings.amqp_url, Topology(settings.amqp_namespace))
        return cls(
            settings=settings,
            engine=engine,
            session_factory=create_session_factory(engine),
            broker=broker,
            publisher=Publisher(broker),
            tokens=TokenVerifier(settings.public_keys(), issuer=settings.jwt_issuer, audience=settings.jwt_audience),
        )

    def outbox_relay(self) -> OutboxRelay:
        return OutboxRelay(
            self.engine,
            self.publisher,
            batch_size=self.settings.outbox_batch_size,
            poll_interval=self.settings.outbox_poll_interval,
            max_backoff=self.settings.outbox_max_backoff,
        )

    def consumer(
        self, subscriptions: Sequence[Subscription[Any, UowT]], uow: Callable[[], UowT]
    ) -> EventConsumer[UowT]:
        return EventConsumer(
            self.broker,
            service=self.settings.service_name,
            subscriptions=subscriptions,
            uow_factory=uow,
            prefetch=self.settings.consumer_prefetch,
            retry_delays=self.settings.consumer_retry_delays,
            max_message_bytes=self.settings.consumer_max_message_bytes,
        )

    def retention_purger(self, *, outbox: bool, inbox: bool) -> RetentionPurger:
        """Purges the tables the service has: `outbox` if it publishes, `inbox` if it consumes."""
        settings = self.settings
        return RetentionPurger(
            self.engine,
            outbox_retention=timedelta(hours=settings.outbox_retention_hours) if outbox else None,
            inbox_retention=timedelta(days=settings.inbox_retention_days) if inbox else None,
            interval=settings.retention_interval,
            batch_size=settings.retention_batch_size,
        )

    async def close(self) -> None:
        await self.broker.close()
        await self.engine.dispose()


def relay_only(runtime: Runtime) -> list[BackgroundRole]:
    """The roles of a service that consumes nothing: its outbox relay and the outbox's retention."""
    return [runtime.outbox_relay(), runtime.retention_purger(outbox=True, inbox=False)]
