"""Where the integration tests find PostgreSQL and RabbitMQ.

In order: `TEST_DATABASE_URL` / `TEST_AMQP_URL` (defaulting to the local servers) when they
answer; else containers, when a Docker engine answers; else the integration tests are skipped,
or fail when `REQUIRE_INTEGRATION=1` (CI) so that a missing server can never pass silently.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: The versions CI's service containers and docker-compose.yml run (libs/fastmicro/tests/test_docs.py checks).
POSTGRES_IMAGE = "postgres:17-alpine"
RABBITMQ_IMAGE = "rabbitmq:4.1-management-alpine"


@dataclass(frozen=True)
class TestServers:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    database_url: str  # a libpq URL with rights to create databases
    amqp_url: str


class ServersUnavailable(RuntimeError):
    pass


def answers(url: str, default_port: int, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout):
            return True
    except OSError:
        return False


def resolve(stack: contextlib.ExitStack) -> TestServers:
    database_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    amqp_url = os.environ.get("TEST_AMQP_URL", DEFAULT_AMQP_URL)
    if answers(database_url, 5432) and answers(amqp_url, 5672):
        return TestServers(database_url, amqp_url)
    if _docker_answers():
        return _start_containers(stack)
    raise ServersUnavailable(
        f"PostgreSQL ({_where(database_url)}) or RabbitMQ ({_where(amqp_url)}) does not answer, "
        "and no Docker engine is available for testcontainers"
    )


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def _docker_answers() -> bool:
    try:
        import docker  # noqa: PLC0415 - only where testcontainers is wanted

        docker.from_env(timeout=2).ping()
    except Exception:  # noqa: BLE001 - no engine, whatever the reason
        return False
    return True


def _start_containers(stack: contextlib.ExitStack) -> TestServers:
    from testcontainers.postgres import PostgresContainer  # noqa: PLC0415
    from testcontainers.rabbitmq import RabbitMqContainer  # noqa: PLC0415

    postgres = stack.enter_context(PostgresContainer(POSTGRES_IMAGE, driver=None))
    rabbitmq = stack.enter_context(RabbitMqContainer(RABBITMQ_IMAGE))
    amqp_url = (
        f"amqp://{rabbitmq.username}:{rabbitmq.password}@"
        f"{rabbitmq.get_container_host_ip()}:{rabbitmq.get_exposed_port(rabbitmq.port)}/"
    )
    return TestServers(postgres.get_connection_url(), amqp_url)
