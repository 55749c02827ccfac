"""The composition root's shared parts: what one service process holds for its whole life."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, runtime_checkable

from aio_pika.abc import AbstractRobustChannel
from fastapi import Request
from typing_extensions import TypeVar

from fastmicro.consumer import EventConsumer, Subscription
from fastmicro.db import create_engine, create_session_factory
from fastmicro.messaging import Broker, Publisher, Topology
from fastmicro.outbox import OutboxRelay
from fastmicro.retention import RetentionPurger
from fastmicro.settings import ServiceSettings
from fastmicro.tokens import TokenVerifier

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from fastmicro.revocation import RevocationList
    from fastmicro.uow import UnitOfWork

UowT = TypeVar("UowT", bound="UnitOfWork")
SettingsT = TypeVar("SettingsT", bound=ServiceSettings, default=ServiceSettings)


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


#: The background roles of a runtime (any Runtime subclass: a service's `roles` method fits).
RolesFactory = Callable[[Any], Sequence[BackgroundRole]]


@dataclass
class Runtime(Generic[SettingsT]):
    """What one service process holds for its whole life, built once from its settings.

    A service subclasses it (`class Orders(Runtime[OrdersSettings])`) to say what is its own: its
    unit of work, the parts it builds once (cached properties), and `roles()`, the background roles
    it runs. Its routes reach it through one dependency, `Annotated[Orders, Depends(Orders.current)]`.
    """

    settings: SettingsT
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    broker: Broker
    publisher: Publisher
    tokens: TokenVerifier
    #: The deleted users whose tokens get 401, where the service learns of deletions (create_app's `revocations`).
    revocations: RevocationList | None = None

    @classmethod
    def from_settings(cls, settings: SettingsT) -> Self:
        engine = create_engine(settings)
        topology = Topology(settings.amqp_namespace, settings.queue_type, settings.consumer_delivery_limit)
        broker = Broker(settings.amqp_url, topology)
        return cls(
            settings=settings,
            engine=engine,
            session_factory=create_session_factory(engine),
            broker=broker,
            publisher=Publisher(broker),
            tokens=TokenVerifier(settings.public_keys(), issuer=settings.jwt_issuer, audience=settings.jwt_audience),
        )

    @classmethod
    def adopt(cls, runtime: Runtime[Any]) -> Self:
        """This class over the same engine, broker and settings as `runtime` (closed with it)."""
        return cls(**{field.name: getattr(runtime, field.name) for field in fields(runtime)})

    @classmethod
    async def current(cls, request: Request) -> Self:
        """The running app's runtime: the one dependency a service's routes take their parts from.

        A coroutine: FastAPI runs a plain function dependency in a worker thread, per request.
        """
        runtime = request.app.state.runtime
        if not isinstance(runtime, cls):
            raise TypeError(f"the app runs a {type(runtime).__name__}, not a {cls.__name__}")
        return runtime

    def roles(self) -> Sequence[BackgroundRole]:
        """The background roles this service runs (in `worker`, and in `serve` unless SERVE_ROLES=false)."""
        raise NotImplementedError(f"{type(self).__name__} must say which background roles it runs: define roles()")

    def fingerprint_key(self) -> bytes | None:
        """The secret Idempotency-Key fingerprints are keyed with (fastmicro.idempotency), for a
        service whose request bodies hold secrets; None: a plain hash is enough."""
        return None

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

    def retention_purger(self, *, outbox: bool, inbox: bool, idempotency: bool = False) -> RetentionPurger:
        """Purges the tables the service has: `outbox` if it publishes, `inbox` if it consumes,
        `idempotency_keys` if it takes Idempotency-Key."""
        settings = self.settings
        return RetentionPurger(
            self.engine,
            outbox_retention=timedelta(hours=settings.outbox_retention_hours) if outbox else None,
            inbox_retention=timedelta(days=settings.inbox_retention_days) if inbox else None,
            idempotency_retention=timedelta(hours=settings.idempotency_key_hours) if idempotency else None,
            interval=settings.retention_interval,
            batch_size=settings.retention_batch_size,
        )

    async def close(self) -> None:
        await self.broker.close()
        await self.engine.dispose()


def role_kind(role: BackgroundRole) -> str:
    """What a role is, as a service's manifest names it (`[tool.fastmicro] roles`, fastmicro.workspace)."""
    kinds: dict[type[Any], str] = {OutboxRelay: "relay", EventConsumer: "consumer", RetentionPurger: "retention"}
    return kinds.get(type(role)) or str(getattr(role, "kind", type(role).__name__))


def relay_only(runtime: Runtime) -> list[BackgroundRole]:
    """The roles of a service that consumes nothing: its outbox relay and the outbox's retention."""
    return [runtime.outbox_relay(), runtime.retention_purger(outbox=True, inbox=False)]
