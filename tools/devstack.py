"""`make dev`: the whole stack as local processes, no Docker.

Creates each service's database if missing, applies its migrations, declares the broker
topology, starts a local SMTP sink that logs what it receives, then runs every service as two
processes, its API (`serve`) and its background roles (`worker`: outbox relay, consumers, email
sender), with their output prefixed by the service's name.
One Ctrl-C (SIGINT) or SIGTERM stops them all, each given time to finish what it holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import asyncpg
from aiosmtpd.controller import Controller
from sqlalchemy.engine import make_url

from fastmicro.workspace import ServiceManifest as Service
from fastmicro.workspace import services

#: Every service of the workspace (services/*/pyproject.toml, [tool.fastmicro]), in the order of their ports.
SERVICES = services(Path(__file__).resolve().parents[1])
_PALETTE = ("\033[36m", "\033[35m", "\033[33m", "\033[34m", "\033[31m", "\033[96m", "\033[95m", "\033[93m")
COLOURS = {service.name: _PALETTE[index % len(_PALETTE)] for index, service in enumerate(SERVICES)}
COLOURS["smtp"] = "\033[32m"
COLOURS.update({f"{name}-w": colour for name, colour in COLOURS.items()})
RESET = "\033[0m"
WIDTH = max(len(name) for name in COLOURS)


def say(source: str, text: str) -> None:
    colour = COLOURS.get(source, "") if sys.stdout.isatty() else ""
    sys.stdout.write(f"{colour}{source:<{WIDTH}} |{RESET if colour else ''} {text}\n")
    sys.stdout.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("DEV_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a server URL with rights to create databases (env DEV_POSTGRES_URL)",
    )
    parser.add_argument("--db-prefix", default="", help="prefix for the service database names")
    parser.add_argument("--port-offset", type=int, default=0, help="added to every service's standard port")
    parser.add_argument("--amqp-namespace", default="", help="prefix for exchange and queue names (tests)")
    parser.add_argument("--smtp-port", type=int, default=1025, help="where notifications sends mail")
    parser.add_argument("--no-smtp-sink", action="store_true", help="use an SMTP server of your own on --smtp-port")
    parser.add_argument("--migrate-only", action="store_true", help="create databases and migrate, then exit")
    return parser.parse_args()


def service_env(args: argparse.Namespace, service: Service) -> dict[str, str]:
    database = make_url(args.postgres).set(drivername="postgresql+asyncpg", database=args.db_prefix + service.name)
    return {
        **os.environ,
        "DATABASE_URL": database.render_as_string(hide_password=False),
        "HTTP_PORT": str(service.port + args.port_offset),
        "AMQP_NAMESPACE": args.amqp_namespace,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(args.smtp_port),
        "SERVE_ROLES": "false",  # each service's `worker` runs them
        "PYTHONUNBUFFERED": "1",
    }


async def ensure_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
            say("devstack", f"created database {name}")
    finally:
        await admin.close()


async def run_step(service: Service, env: dict[str, str], command: str) -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", service.name, command, env=env)
    if await process.wait() != 0:
        raise SystemExit(f"devstack: `python -m {service.name} {command}` failed")


class LoggingSink:
    """aiosmtpd handler: accepts every message and logs who it was for and what it said."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        mail = message_from_bytes(envelope.content, policy=default_policy)
        say("smtp", f"mail to {', '.join(envelope.rcpt_tos)}: {mail['Subject']!r} ({mail['Message-ID']})")
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_sink(port: int) -> Iterator[None]:
    controller = Controller(LoggingSink(), hostname="127.0.0.1", port=port)
    controller.start()
    say("smtp", f"sink listening on 127.0.0.1:{port}")
    try:
        yield
    finally:
        controller.stop()


async def pipe(stream: asyncio.StreamReader, source: str) -> None:
    while line := await stream.readline():
        say(source, line.decode(errors="replace").rstrip("\n"))


async def prepare(args: argparse.Namespace) -> None:
    for service in SERVICES:
        env = service_env(args, service)
        await ensure_database(args.postgres, args.db_prefix + service.name)
        await run_step(service, env, "migrate")
        await run_step(service, env, "topology")


async def serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    processes: list[asyncio.subprocess.Process] = []
    pipes: list[asyncio.Task[None]] = []
    names: list[str] = []
    for service in SERVICES:
        # The API and the background roles in processes of their own, as deployed: under load the
        # API's event loop would delay the relay, the consumers and the sender.
        for command, source in (("serve", service.name), ("worker", f"{service.name}-w")):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                service.name,
                command,
                env=service_env(args, service),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches them once, through us
            )
            if process.stdout is not None:
                pipes.append(asyncio.create_task(pipe(process.stdout, source)))
            processes.append(process)
            names.append(source)
        port = service.port + args.port_offset
        say("devstack", f"{service.name} on http://127.0.0.1:{port}/docs, worker metrics on :{port + 1000}/metrics")

    exits = [asyncio.create_task(process.wait()) for process in processes]
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    say("devstack", "stopping")
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*exits), 25)
    for process in processes:
        if process.returncode is None:
            process.kill()
    await asyncio.gather(*exits, *pipes, return_exceptions=True)
    stopping.cancel()
    crashed = [name for name, p in zip(names, processes, strict=True) if p.returncode not in (0, -signal.SIGTERM)]
    if crashed and not stop.is_set():
        say("devstack", f"{', '.join(crashed)} exited unexpectedly")
        return 1
    return 0


async def main() -> int:
    args = parse_args()
    await prepare(args)
    if args.migrate_only:
        return 0
    if args.no_smtp_sink:
        return await serve(args)
    with smtp_sink(args.smtp_port):
        return await serve(args)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
