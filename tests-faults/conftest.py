"""Fixtures of the fault suite: a fresh stack per scenario, and the figures table it prints."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fastmicro.messaging import Broker, Topology
from fastmicro.testing import TestServers, migrated_database
from fastmicro.testing.plugin import DatabaseFactory, delete_topology
from fault_stack import SERVICES, FaultStack, MailSink
from figures import Figure, Record, table

_FIGURES = pytest.StashKey[list[Figure]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = []


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """`record(Figure(...))`: printed now and in the table at the end of the run."""

    def add(figure: Figure) -> None:
        print(f"\nfigures: {figure}")  # the scenario's own account, shown with -s
        request.config.stash[_FIGURES].append(figure)

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    figures = config.stash.get(_FIGURES, [])
    if not figures:
        return
    terminalreporter.section("fault figures")
    terminalreporter.write_line(table(figures))
    if report := os.environ.get("FAULTS_REPORT"):
        Path(report).write_text(table(figures) + "\n")


@pytest.fixture(scope="session")
def mail() -> Iterator[MailSink]:
    sink = MailSink().start()
    yield sink
    sink.stop()


@pytest.fixture
async def stack(
    database_factory: DatabaseFactory, test_servers: TestServers, amqp_namespace: str, mail: MailSink
) -> AsyncIterator[FaultStack]:
    """Fresh databases, a broker namespace of the scenario's own with every queue declared."""
    namespace = f"{amqp_namespace}f{uuid.uuid4().hex[:6]}."
    databases = {
        service: await migrated_database(database_factory, service, f"{service}:migrations") for service in SERVICES
    }
    broker = Broker(test_servers.amqp_url, Topology(namespace))
    stack = FaultStack(namespace, test_servers.amqp_url, databases, mail, broker)
    queues = [
        queue for name, service in SERVICES.items() for queue in await service.declare_topology(stack.settings(name))
    ]
    try:
        yield stack
    finally:
        await stack.close()
        await delete_topology(broker, tuple(queues))
        await broker.close()
