"""The services wired for fault injection: own databases, broker namespace and SMTP server.

Each scenario gets a `FaultStack`: fresh databases (so counts are the scenario's alone), a broker
namespace of its own (so no other test's consumer takes its messages), and the settings or
environment to run any service in process (`stack.app(...)`) or as a subprocess
(`stack.env(...)` for `ServiceProcess`), with any dependency behind a `TcpProxy` it can cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastmicro.messaging import Broker
from fastmicro.service import Service
from fastmicro.testing import app_client, publish_event
from fastmicro.testing.tokens import signer_for
from fastmicro.tokens import TokenSigner
from fastmicro.workspace import services
from fastmicro_contracts.users import UserCreated

#: Every service of the workspace (services/*/pyproject.toml), as its main.py declares it.
SERVICES: dict[str, Service[Any, Any]] = {
    manifest.name: importlib.import_module(f"{manifest.name}.main").service for manifest in services()
}

#: Short delays everywhere, so a scenario sees retries and recoveries in seconds, not minutes.
FAST: dict[str, Any] = {
    "environment": "test",
    "log_format": "console",
    "outbox_poll_interval": 0.5,
    "outbox_max_backoff": 1.0,
    "consumer_retry_delays": [0.2, 0.5, 1.0],
    "db_pool_timeout": 3.0,
    "db_connect_timeout": 1.0,
}
FAST_BY_SERVICE: dict[str, dict[str, Any]] = {
    "users": {"password_hash_time_cost": 1, "password_hash_memory_kib": 1024, "password_hash_parallelism": 1},
    "orders": {},
    "notifications": {
        "send_retry_delays": [0.2, 0.5, 1.0],
        "sender_poll_interval": 0.2,
        "sender_max_backoff": 1.0,
        "smtp_timeout": 3.0,
        "sender_lease_seconds": 4.0,  # one send (3 s) and its record: renewed while a batch lasts
    },
}

ONE_ITEM = [{"sku": "FAULT-1", "quantity": 1, "unit_price": 1000}]


class MailSink:
    """A real SMTP server (aiosmtpd) that keeps every message it accepts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self._controller = Controller(self, hostname="127.0.0.1", port=0)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self._messages.append(message)
        return "250 OK"

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> MailSink:
        self._controller.port = free_port()
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class FaultStack:
    namespace: str
    amqp_url: str
    databases: dict[str, str]
    mail: MailSink
    broker: Broker
    engines: dict[str, AsyncEngine] = field(default_factory=dict)

    def settings(self, service: str, **overrides: Any) -> Any:
        """That service's settings, pointed at the stack (and at any proxy URL given in overrides)."""
        values: dict[str, Any] = {
            **FAST,
            **FAST_BY_SERVICE.get(service, {}),
            "database_url": self.databases[service],
            "amqp_url": self.amqp_url,
            "amqp_namespace": self.namespace,
        }
        if service == "notifications":
            values["smtp_port"] = self.mail.port
        return SERVICES[service].settings(_env_file=None, **{**values, **overrides})

    def env(self, service: str, **overrides: Any) -> dict[str, str]:
        """The same settings as environment variables, for `python -m <service> worker`."""
        settings = self.settings(service, **overrides)
        values = settings.model_dump(mode="json")
        values["log_format"] = "json"
        return {name.upper(): v if isinstance(v, str) else json.dumps(v) for name, v in values.items() if v is not None}

    @contextlib.asynccontextmanager
    async def app(self, service: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        """The service in this process (API and background roles), as an HTTP client."""
        settings = self.settings(service, **overrides)
        async with app_client(SERVICES[service].create_app(settings), base_url=f"http://{service}") as client:
            yield client

    def tokens(self) -> TokenSigner:
        return signer_for(self.settings("orders"))

    def bearer(self, user_id: uuid.UUID) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens().issue(user_id).access_token}"}

    def engine(self, service: str) -> AsyncEngine:
        if service not in self.engines:
            self.engines[service] = create_async_engine(self.databases[service])
        return self.engines[service]

    async def scalar(self, service: str, sql: str, **params: Any) -> Any:
        async with self.engine(service).connect() as conn:
            return await conn.scalar(text(sql), params)

    async def rows(self, service: str, sql: str, **params: Any) -> list[Any]:
        async with self.engine(service).connect() as conn:
            return list((await conn.execute(text(sql), params)).all())

    async def user_created(self, user_id: uuid.UUID | None = None) -> tuple[uuid.UUID, str]:
        """Publish UserCreated for a new user, as the users service would; returns (id, email)."""
        user_id = user_id or uuid.uuid4()
        email = f"fault-{user_id.hex[:12]}@example.com"
        await publish_event(self.broker, UserCreated(user_id=user_id, email=email, name="Fault Tolerant"))
        return user_id, email

    async def dead_letters(self, service: str) -> int:
        channel = await self.broker.channel(publisher_confirms=False)
        try:
            queue = await channel.declare_queue(f"{self.namespace}{service}.events.dead", passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def close(self) -> None:
        for engine in self.engines.values():
            await engine.dispose()


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 60.0, every: float = 0.1, what: str = "condition"
) -> float:
    """Wait until `check()` is true; returns the seconds it took. Fails the test after `within`."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            while not await check():
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {within}s") from None
    return time.monotonic() - started


async def wait_ready(client: httpx.AsyncClient, status: str, *, within: float = 20.0) -> dict[str, Any]:
    body: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal body
        body = (await client.get("/health/ready")).json()
        return bool(body["status"] == status)

    await eventually(reached, within=within, every=0.1, what=f"ready={status}")
    return body
