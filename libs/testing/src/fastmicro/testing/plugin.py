"""pytest plugin (registered through the `pytest11` entry point): servers, databases and the bus."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

import asyncpg
import pytest

from fastmicro.messaging import Broker, Topology
from fastmicro.testing.processes import ServiceProcess
from fastmicro.testing.proxy import TcpProxy
from fastmicro.testing.servers import ServersUnavailable, TestServers, resolve

DatabaseFactory = Callable[[str], Awaitable[str]]
ProxyFactory = Callable[[str], Awaitable[TcpProxy]]
ProcessFactory = Callable[..., Awaitable[ServiceProcess]]


@pytest.fixture(scope="session")
def test_servers() -> Iterator[TestServers]:
    with contextlib.ExitStack() as stack:
        try:
            servers = resolve(stack)
        except ServersUnavailable as error:
            if os.environ.get("REQUIRE_INTEGRATION") == "1":
                pytest.fail(f"integration servers required: {error}", pytrace=False)
            pytest.skip(str(error))
        yield servers


@pytest.fixture(scope="session")
async def database_factory(test_servers: TestServers) -> AsyncIterator[DatabaseFactory]:
    """Creates empty databases for this session (returning SQLAlchemy URLs) and drops them after."""
    admin = await asyncpg.connect(test_servers.database_url)
    created: list[str] = []

    async def create(label: str) -> str:
        name = f"fm_test_{label}_{uuid.uuid4().hex[:8]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return sqlalchemy_url(test_servers.database_url, name)

    try:
        yield create
    finally:
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def migrated_database(database_factory: DatabaseFactory, label: str, migrations: str) -> str:
    """A fresh database with a service's real migrations applied (`migrations` like "users:migrations")."""
    from fastmicro.migrations import upgrade_to_head  # noqa: PLC0415

    url = await database_factory(label)
    await upgrade_to_head(migrations, url)
    return url


def sqlalchemy_url(libpq_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    url = make_url(libpq_url).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def amqp_namespace() -> str:
    """A prefix for every exchange and queue this session declares: tests never meet a running stack."""
    return f"test-{uuid.uuid4().hex[:8]}."


@pytest.fixture(scope="session")
def queues_to_delete() -> list[str]:
    """Names of namespaced queues a session declared; appended to by fixtures, deleted at the end."""
    return []


@pytest.fixture(scope="session")
async def test_broker(
    test_servers: TestServers, amqp_namespace: str, queues_to_delete: list[str]
) -> AsyncIterator[Broker]:
    broker = Broker(test_servers.amqp_url, Topology(amqp_namespace))
    yield broker
    await delete_topology(broker, tuple(queues_to_delete))
    await broker.close()


async def delete_topology(broker: Broker, queues: tuple[str, ...] = ()) -> None:
    """Remove the namespaced exchanges and queues a session declared from the shared broker."""
    topology = broker.topology
    channel = await broker.channel(publisher_confirms=False)
    for queue in (topology.unrouted_queue, *queues):
        with contextlib.suppress(Exception):
            await channel.queue_delete(queue)
    for exchange in (topology.events_exchange, topology.unrouted_exchange):
        with contextlib.suppress(Exception):
            await channel.exchange_delete(exchange)
    with contextlib.suppress(Exception):
        await channel.close()


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[ProxyFactory]:
    """`await tcp_proxy(url)` starts a proxy in front of the server `url` names."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    proxies: list[TcpProxy] = []

    async def start(url: str) -> TcpProxy:
        parts = urlsplit(url)
        default = 5432 if parts.scheme.startswith("postgres") else 5672
        proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or default).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.close()


@pytest.fixture
async def service_process() -> AsyncIterator[ProcessFactory]:
    """`await service_process("orders", env={...})` starts `python -m orders worker`; killed at teardown."""
    processes: list[ServiceProcess] = []

    async def start(
        service: str, command: str = "worker", *, env: Mapping[str, str], name: str = "", ready: str = "worker_started"
    ) -> ServiceProcess:
        process = ServiceProcess(service, command, env=env, name=name)
        processes.append(process)
        return await process.start(ready=ready)

    yield start
    for process in processes:
        await process.close()
