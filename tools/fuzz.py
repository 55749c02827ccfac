"""`make fuzz`: schemathesis against every service's OpenAPI document, over HTTP, on real PostgreSQL and RabbitMQ.

The three services run in this one process, each on its own uvicorn server (as `serve` runs it:
httptools, uvloop) with its background roles (relay, consumers, email sender), on fresh databases
and a broker namespace of their own, mail going to a sink here. In-process because a service
process spends seconds importing: three `serve`s, three `worker`s and six migrate and topology
steps (as `make dev` starts them) took ~50 s on two cores, this takes a few. Then
`schemathesis run` (settings and the checks left out, with why, in tools/fuzz.toml) reads each
service's /openapi.json, so new operations are fuzzed with no change here. Any failure of any
service fails the run. Extra arguments go to every `schemathesis run`, e.g. `--max-examples 500`;
FUZZ_SERVICES=users,orders fuzzes only those.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
import uvloop
from aiosmtpd.controller import Controller

from fastmicro.messaging import Broker, Topology
from fastmicro.migrations import upgrade_to_head
from fastmicro.service import Service as Declared
from fastmicro.settings import ServiceSettings
from fastmicro.testing.plugin import delete_topology, sqlalchemy_url
from fastmicro.testing.ports import free_port_base
from fastmicro.testing.servers import TestServers, resolve
from notifications.main import service as notifications
from notifications.settings import NotificationsSettings
from orders.main import service as orders
from orders.settings import OrdersSettings
from users.main import service as users
from users.settings import UsersSettings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tools" / "fuzz.toml"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SERVICES = ("users", "orders", "notifications")
PEERS = ("alice", "bob")  # the users orders and notifications are fuzzed as (tools/fuzz.toml)


@dataclass(frozen=True)
class Service:
    name: str
    settings: ServiceSettings
    declared: Declared[Any, Any]  #: its `service` (fastmicro.service): the app, the roles, the topology

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"


def services(servers: TestServers, tag: str, base_port: int, smtp_port: int) -> list[Service]:
    def common(index: int, name: str) -> dict[str, Any]:
        return {
            "_env_file": None,  # a developer's .env changes nothing here
            "environment": "development",
            "database_url": sqlalchemy_url(servers.database_url, f"fm_fuzz_{tag}_{name}"),
            "amqp_url": servers.amqp_url,
            "amqp_namespace": f"fuzz-{tag}.",
            "http_port": base_port + index,
            # Warnings and errors only: an unexpected fault's traceback is what is worth reading here.
            "log_level": "WARNING",
            "log_format": "console",
        }

    # Cheap hashing, as in the tests: the fuzzer registers users by the hundred.
    cheap_hashing: dict[str, Any] = {
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
        "password_hash_parallelism": 1,
    }
    # Every request of the run comes from 127.0.0.1: the per-address limit on failed logins would soon
    # refuse the fuzzer's own accounts their logins. The limits per account stay as deployed.
    one_address: dict[str, Any] = {"login_failures_per_address": 1_000_000}
    return [
        Service("users", UsersSettings(**common(0, "users"), **cheap_hashing, **one_address), users),
        Service("orders", OrdersSettings(**common(1, "orders")), orders),
        Service(
            "notifications", NotificationsSettings(**common(2, "notifications"), smtp_port=smtp_port), notifications
        ),
    ]


def say(text: str, *, gap: bool = False) -> None:
    sys.stdout.write(f"{chr(10) if gap else ''}fuzz: {text}\n")
    sys.stdout.flush()


class MailSink:
    """Accepts every mail notifications sends."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        return "250 OK"


class _Server(uvicorn.Server):
    """Three servers share this process: none of them takes over SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def databases(servers: TestServers, tag: str) -> AsyncIterator[None]:
    admin = await asyncpg.connect(servers.database_url)
    names = [f"fm_fuzz_{tag}_{name}" for name in SERVICES]
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield
    finally:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def topology(stack: list[Service], amqp_url: str, namespace: str) -> AsyncIterator[None]:
    queues: list[str] = []
    try:
        for service in stack:
            queues += await service.declared.declare_topology(service.settings, wait=10)
        yield
    finally:
        broker = Broker(amqp_url, Topology(namespace))
        await delete_topology(broker, tuple(queues))  # each consumer's queue, its retry queues and its dead letters
        await broker.close()


@contextlib.asynccontextmanager
async def serving(stack: list[Service]) -> AsyncIterator[None]:
    servers = [
        _Server(
            uvicorn.Config(
                service.declared.create_app(service.settings),
                host="127.0.0.1",
                port=service.settings.http_port,
                http="httptools",
                log_config=None,
                server_header=False,
            )
        )
        for service in stack
    ]
    # schemathesis probes whether a server takes NUL in a header; uvicorn's warning about it is noise here.
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        while not all(server.started for server in servers):
            for task in tasks:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError("a server stopped during startup")
            await asyncio.sleep(0.05)
        yield
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


async def peers_file(users_url: str, directory: Path) -> Path:
    """Register the peers of tools/fuzz.toml and describe their login as a Web Fuzzing Commons auth file."""
    entries = []
    async with httpx.AsyncClient(base_url=users_url, timeout=10) as client:
        for name in PEERS:
            email, password = f"{name}@fuzz.example.com", f"{name}-fuzzing-password"
            body = {"email": email, "password": password, "name": name}
            (await client.post("/users", json=body)).raise_for_status()
            login = {
                "externalEndpointURL": f"{users_url}/auth/token",
                "verb": "POST",
                "contentType": "application/x-www-form-urlencoded",
                "payloadUserPwd": {
                    "username": email,
                    "usernameField": "username",
                    "password": password,
                    "passwordField": "password",
                },
                "token": {
                    "extractFrom": "body",
                    "extractSelector": "/access_token",
                    "sendIn": "header",
                    "sendName": "Authorization",
                    "sendTemplate": "Bearer {token}",
                },
            }
            entries.append({"name": name, "loginEndpointAuth": login})
    path = directory / "peers.json"
    path.write_text(json.dumps({"auth": entries}, indent=2))
    return path


async def fuzz(service: Service, users_url: str, peers: Path, args: list[str]) -> tuple[int, float]:
    """Run schemathesis against one service; its exit code and how long it took."""
    started = time.monotonic()
    env = {**os.environ, "FUZZ_USERS_URL": users_url, "FUZZ_ACCOUNT": service.name, "FUZZ_PEERS": str(peers)}
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{service.url}/openapi.json", *args]
    say(f"{service.name}: schemathesis {' '.join(command[1:])}", gap=True)
    process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env)
    return await process.wait(), time.monotonic() - started


async def main(args: list[str]) -> int:
    started = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    chosen = os.environ.get("FUZZ_SERVICES", ",".join(SERVICES)).split(",")
    if unknown := set(chosen) - set(SERVICES):
        raise SystemExit(f"fuzz: FUZZ_SERVICES names no service {sorted(unknown)}; the services: {', '.join(SERVICES)}")
    with contextlib.ExitStack() as exit_stack:
        servers = resolve(exit_stack)
        base = free_port_base(range(len(SERVICES) + 1))
        controller = Controller(MailSink(), hostname="127.0.0.1", port=base + len(SERVICES))
        controller.start()
        exit_stack.callback(controller.stop)
        stack = services(servers, tag, base, base + len(SERVICES))
        async with databases(servers, tag):
            for service in stack:
                await upgrade_to_head(f"{service.name}:migrations", service.settings.database_url)
            async with topology(stack, servers.amqp_url, f"fuzz-{tag}."), serving(stack):
                say(f"stack up in {time.monotonic() - started:.1f} s")
                peers = await peers_file(stack[0].url, Path(exit_stack.enter_context(tempfile.TemporaryDirectory())))
                targets = [service for service in stack if service.name in chosen]
                results = {service.name: await fuzz(service, stack[0].url, peers, args) for service in targets}
    outcomes = (
        f"{name} {'passed' if code == 0 else 'FAILED'} ({took:.0f} s)" for name, (code, took) in results.items()
    )
    say(", ".join(outcomes), gap=True)
    say(f"finished in {time.monotonic() - started:.0f} s")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(uvloop.run(main(sys.argv[1:])))
