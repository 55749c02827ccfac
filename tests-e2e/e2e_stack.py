"""The stack as `make dev` starts it, with databases, ports, broker namespace and SMTP server of its own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from fastmicro.messaging import Broker, Topology
from fastmicro.settings import ServiceSettings
from fastmicro.testing.plugin import delete_topology
from fastmicro.testing.ports import free_port_base
from fastmicro.workspace import services

ROOT = Path(__file__).resolve().parents[1]
#: Every service `make dev` runs, and its port: what each services/<name>/pyproject.toml declares.
SERVICES = {service.name: service.port for service in services(ROOT)}
CONSUMERS = tuple(service.name for service in services(ROOT) if service.consumes)


#: Mail to an address that starts with this is refused for good (550).
REFUSED = "refused-"

#: Where each service's `worker` serves /metrics: its HTTP port + 1000 (WORKER_METRICS_PORT's default).
WORKER_METRICS_OFFSET = 1000


@dataclass
class Mailbox:
    """An SMTP server of the test's own: every message the stack sends, as received."""

    messages: list[EmailMessage] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        if any(address.startswith(REFUSED) for address in envelope.rcpt_tos):
            return "550 5.1.1 mailbox unavailable"  # a permanent refusal: the sender gives up at once
        message = message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] and address in message["To"]]


@dataclass
class Stack:
    urls: dict[str, str]
    mailbox: Mailbox
    log: Path
    #: Each service's worker's /metrics.
    worker_metrics: dict[str, str] = field(default_factory=dict)
    #: The broker the stack uses, with its namespace: a test can publish as a producer would.
    amqp_url: str = ""
    namespace: str = ""

    def client(self, service: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.urls[service], timeout=10)


def free_port_offset() -> int:
    """An offset at which every service's port is free."""
    return free_port_base([*SERVICES.values(), *(port + WORKER_METRICS_OFFSET for port in SERVICES.values())])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_ready(urls: dict[str, str], process: asyncio.subprocess.Process, log: Path) -> None:
    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(120):
        for url in urls.values():
            while True:
                if process.returncode is not None:
                    output = await asyncio.to_thread(log.read_text)
                    raise RuntimeError(f"devstack exited early:\n{output[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/health/ready")).json().get("status") == "ok":
                        break
                await asyncio.sleep(0.25)


async def drop_databases(admin_url: str, prefix: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        for name in SERVICES:
            await admin.execute(f'DROP DATABASE IF EXISTS "{prefix}{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_queues(amqp_url: str, namespace: str) -> None:
    broker = Broker(amqp_url, Topology(namespace))
    delays = ServiceSettings.model_fields["consumer_retry_delays"].default
    queues = [
        f"{namespace}{service}.events{suffix}"
        for service in CONSUMERS
        for suffix in ("", ".dead", *(f".retry.{int(delay * 1000)}ms" for delay in delays))
    ]
    try:
        await delete_topology(broker, tuple(queues))
    finally:
        await broker.close()
