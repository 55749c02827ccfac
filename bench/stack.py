"""Starting what a path needs: databases, topology, the SMTP sink, the services, their raw twins, workers.

Services run as `python -m <svc> serve` (and `worker`) with the settings of deploy/k8s/base/kustomization.yaml
(read from the file), except ENVIRONMENT=development (so the development JWT secret is
accepted) and HTTP_HOST=127.0.0.1; their output goes to `<work_dir>/logs/<name>.log`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import yaml

from bench import broker
from bench.config import ROOT, SERVICES, Setup
from bench.processes import LogWatch, Process, Processes, poll_until, wait_http_ready
from bench.tokens import JWT
from fastmicro.settings import ServiceSettings
from notifications.settings import NotificationsSettings
from users.settings import UsersSettings

KUSTOMIZATION = ROOT / "deploy" / "k8s" / "base" / "kustomization.yaml"
#: Every setting a service reads from the environment: none leaks in from the bench's own.
_SETTINGS_NAMES = {
    name.upper()
    for settings in (ServiceSettings, UsersSettings, NotificationsSettings)
    for name in settings.model_fields
}


def production_settings(service: str) -> dict[str, str]:
    """The non-secret settings deploy/k8s/base gives `service` (its `<service>-config` literals).

    Except where the cluster's neighbours are named: its trace collector (tracing is measured off,
    the default, unless the bench's own environment sets the OTEL_* variables, which pass through)
    and the workers' fixed metrics ports (here each worker's is its API's port + 1000, so runs side
    by side never collide).
    """
    document = yaml.safe_load(KUSTOMIZATION.read_text())
    for generator in document["configMapGenerator"]:
        if generator["name"] == f"{service}-config":
            literals = dict(literal.split("=", 1) for literal in generator["literals"])
            return {
                name: value
                for name, value in literals.items()
                if not name.startswith("OTEL_") and name != "WORKER_METRICS_PORT"
            }
    raise LookupError(f"{KUSTOMIZATION} has no {service}-config")


class Stack:
    """What one run starts, all of it stopped by `close()`."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.processes = Processes()
        self.logs = setup.work_dir / "logs"

    def env(self, service: str) -> dict[str, str]:
        setup = self.setup
        base = {key: value for key, value in os.environ.items() if key not in _SETTINGS_NAMES}
        return {
            **base,
            **production_settings(service),
            "ENVIRONMENT": "development",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(setup.port(service)),
            "DATABASE_URL": setup.sqlalchemy_url(service),
            "AMQP_URL": setup.amqp_url,
            "AMQP_NAMESPACE": setup.amqp_namespace,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(setup.smtp_port),
            "PYTHONUNBUFFERED": "1",
        }

    def _process(self, name: str, *args: str, env: dict[str, str]) -> Process:
        # cwd: the work dir, so that no .env of the checkout changes a setting
        return Process.python(name, *args, env=env, log=self.logs / f"{name}.log", cwd=self.setup.work_dir)

    async def prepare(self) -> None:
        """Fresh databases, migrated; the namespace's exchanges and queues, declared anew."""
        self.setup.work_dir.mkdir(parents=True, exist_ok=True)
        await broker.delete_namespace(self.setup)
        admin = await asyncpg.connect(self.setup.postgres_url)
        try:
            for service in SERVICES:
                database = self.setup.database(service)
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                await admin.execute(f'CREATE DATABASE "{database}"')
        finally:
            await admin.close()
        await asyncio.gather(
            *(self._step(service, command) for service in SERVICES for command in ("migrate", "topology"))
        )

    async def drop_databases(self) -> None:
        admin = await asyncpg.connect(self.setup.postgres_url)
        try:
            for service in SERVICES:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.setup.database(service)}" WITH (FORCE)')
        finally:
            await admin.close()

    async def _step(self, service: str, command: str) -> None:
        """`python -m <service> migrate|topology`, to the end (the topology needs no database)."""
        process = await self.processes.start(
            self._process(f"{service}-{command}", "-m", service, command, env=self.env(service))
        )
        code = await process.wait(within=120)
        await self.processes.stop(process)
        if code != 0:
            raise RuntimeError(f"`python -m {service} {command}` failed:\n{process.tail()}")

    async def sink(self) -> Process:
        """The SMTP sink, recording into `mail_record`."""
        record = self.mail_record
        record.write_bytes(b"")  # this run's mail only
        process = await self.processes.start(
            self._process(
                "smtp-sink",
                "-m",
                "bench.sink",
                "--port",
                str(self.setup.smtp_port),
                "--record",
                str(record),
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        )
        size = record.stat().st_size

        async def listening() -> bool:
            return b'"kind": "ready"' in record.read_bytes()[size:]

        await poll_until(listening, what="the SMTP sink", within=30, watch=[process])
        return process

    @property
    def mail_record(self) -> Path:
        return self.setup.work_dir / "mail.jsonl"

    async def serve(self, service: str, *, workers: int = 1) -> Process:
        """`python -m <service> serve [--workers N]`, ready when /health/ready says ok."""
        args = ["-m", service, "serve", *(["--workers", str(workers)] if workers > 1 else [])]
        process = await self.processes.start(self._process(f"{service}-serve", *args, env=self.env(service)))
        await wait_http_ready(self.setup.url(service), process)
        return process

    async def raw(self, service: str) -> Process:
        """The raw twin of `service`'s hot routes (bench.raw.app)."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "JWT_PUBLIC_KEYS": JWT.public_keys}
        process = await self.processes.start(
            self._process(
                f"raw-{service}",
                "-m",
                "bench.raw.app",
                "--service",
                service,
                "--port",
                str(self.setup.raw_port(service)),
                "--database-url",
                self.setup.dsn(service),
                *JWT.raw_args(),
                env=env,
            )
        )
        await wait_http_ready(self.setup.raw_url(service), process)
        return process

    async def worker(self, service: str, role: str | None = None, *, number: int = 1) -> Process:
        """`python -m <service> worker`, or only one of its background roles (bench.roles) when `role` is given.

        `number` tells apart several workers of one service (their logs).
        """
        env = {**self.env(service), "PYTHONPATH": str(ROOT)}
        args = ["-m", service, "worker"] if role is None else ["-m", "bench.roles", service, role]
        name = f"{service}-{'worker' if role is None else role}{'' if number == 1 else f'-{number}'}"
        process = self._process(name, *args, env=env)
        watch = LogWatch(process)
        await self.processes.start(process)
        await watch.wait_for("worker_started")
        return process

    async def raw_job(self, name: str, *args: str) -> Process:
        """A raw twin of a background path (bench.raw.<name>), ready when it logs `raw_ready`."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        process = self._process(f"raw-{name}", "-m", f"bench.raw.{name}", *args, env=env)
        watch = LogWatch(process)
        await self.processes.start(process)
        await watch.wait_for("raw_ready")
        return process

    async def stop(self, *processes: Process) -> None:
        await self.processes.stop(*processes)

    async def close(self) -> None:
        await self.processes.stop_all()
