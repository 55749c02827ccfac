"""`make dev`: the whole stack as local processes.

Finds PostgreSQL and RabbitMQ (tools/devservers.py: answering, a stopped local installation,
containers of docker-compose.yml's own services, or the command that installs them), creates each
service's database if missing, applies its migrations, declares the broker topology, starts a
local SMTP sink that logs what it receives (or uses Mailpit beside the containers), then runs
every service as two processes, its API (`serve`) and its background roles (`worker`: outbox
relay, consumers, email sender), with their output prefixed by the service's name. With
`--reload` (what `make dev` passes) a process restarts when a source file it runs changes
(tools/devreload.py). Once every API is ready it prints where everything is (tools/banner.py).
One Ctrl-C (SIGINT) or SIGTERM stops them all, each given time to finish what it holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiosmtpd.controller import Controller
from banner import Where, banner
from devreload import Child, Supervisor, watch, watched
from devservers import MAILPIT_UI, Machine, Selection, Source, postgres, rabbitmq, select
from sqlalchemy.engine import make_url

from fastmicro.workspace import ServiceManifest as Service
from fastmicro.workspace import services

ROOT = Path(__file__).resolve().parents[1]
#: Every service of the workspace (services/*/pyproject.toml, [tool.fastmicro]), in the order of their ports.
SERVICES = services(ROOT)
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
    parser.add_argument(
        "--amqp",
        default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        help="the RabbitMQ URL (env AMQP_URL)",
    )
    parser.add_argument("--db-prefix", default="", help="prefix for the service database names")
    parser.add_argument("--port-offset", type=int, default=0, help="added to every service's standard port")
    parser.add_argument("--amqp-namespace", default="", help="prefix for exchange and queue names (tests)")
    parser.add_argument("--smtp-port", type=int, default=1025, help="where notifications sends mail")
    parser.add_argument("--no-smtp-sink", action="store_true", help="use an SMTP server of your own on --smtp-port")
    parser.add_argument("--migrate-only", action="store_true", help="create databases and migrate, then exit")
    parser.add_argument("--reload", action="store_true", help="restart a process when a source file it runs changes")
    parser.add_argument("--install", action="store_true", help="install missing servers with the OS's package manager")
    parser.add_argument("--keep-servers", action="store_true", help="leave the containers started for it running")
    return parser.parse_args()


def service_env(args: argparse.Namespace, service: Service) -> dict[str, str]:
    database = make_url(args.postgres).set(drivername="postgresql+asyncpg", database=args.db_prefix + service.name)
    return {
        **os.environ,
        "DATABASE_URL": database.render_as_string(hide_password=False),
        "AMQP_URL": args.amqp,
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


async def run_step(service: Service, env: dict[str, str], *command: str) -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", service.name, *command, env=env)
    if await process.wait() != 0:
        raise SystemExit(f"devstack: `python -m {service.name} {' '.join(command)}` failed")


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
        # Queues an earlier stack declared otherwise (classic ones, from before quorum was the
        # default) are recreated with their messages: none of this stack's processes runs yet.
        await run_step(service, env, "queues", "migrate")
        await run_step(service, env, "topology")


def children(args: argparse.Namespace) -> list[Child]:
    # The API and the background roles in processes of their own, as deployed: under load the
    # API's event loop would delay the relay, the consumers and the sender.
    return [
        Child(source, service.name, [sys.executable, "-m", service.name, command], service_env(args, service))
        for service in SERVICES
        for command, source in (("serve", service.name), ("worker", f"{service.name}-w"))
    ]


async def announce(args: argparse.Namespace, where: Where) -> None:
    """The banner, once every API answers ready (bounded: a service that never does is named instead)."""
    async with httpx.AsyncClient(timeout=2) as client:
        for service in SERVICES:
            url = f"http://127.0.0.1:{service.port + args.port_offset}/health/ready"
            try:
                async with asyncio.timeout(120):
                    while True:
                        with contextlib.suppress(httpx.HTTPError):
                            if (await client.get(url)).status_code == 200:
                                break
                        await asyncio.sleep(0.25)
            except TimeoutError:
                say("devstack", f"{service.name} is not ready after 120 s ({url}): see its lines above")
                return
    say("devstack", "ready:")
    for line in banner(SERVICES, where):
        say("devstack", line)


def where_for(args: argparse.Namespace, selection: Selection) -> Where:
    if selection.mailpit:
        mail = f"Mailpit {MAILPIT_UI} (every mail the stack sends)"
    elif args.no_smtp_sink:
        mail = f"the SMTP server on 127.0.0.1:{args.smtp_port}"
    else:
        mail = f"SMTP sink on 127.0.0.1:{args.smtp_port}: each mail is an `smtp |` line here"
    containers = (
        " and the containers stop (make dev KEEP=1 keeps them)" if selection.stop and not args.keep_servers else ""
    )
    return Where(
        host="127.0.0.1",
        port_offset=args.port_offset,
        mail=mail,
        rabbitmq_ui=selection.rabbitmq_ui,
        logs="this terminal, each line prefixed by its process (<service>-w: its worker)"
        + ("; a process restarts when a source file it runs is saved" if args.reload else ""),
        stop=f"Ctrl-C once: every process finishes what it holds{containers}",
        extras=(("metrics", "/metrics on each API; each worker's on the API's port + 1000"),),
    )


async def serve(args: argparse.Namespace, selection: Selection) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    supervisor = Supervisor(children(args), output=say)
    await supervisor.start_all()
    background = [asyncio.create_task(announce(args, where_for(args, selection)))]
    if args.reload:
        background.append(
            asyncio.create_task(watch(watched(ROOT), lambda changes: supervisor.reload(changes, ROOT), stop=stop))
        )
    crashed = await supervise(supervisor, stop, reload=args.reload)
    say("devstack", "stopping")
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await supervisor.stop_all()
    return 1 if crashed else 0


async def supervise(supervisor: Supervisor, stop: asyncio.Event, *, reload: bool) -> bool:
    """Wait for Ctrl-C, or for a process to exit on its own: then True when that exit was a failure.

    With reload, a process that exits (a syntax error just saved) waits for the next change instead.
    """
    seen: set[tuple[str, int]] = set()
    stopping = asyncio.create_task(stop.wait())
    try:
        while True:
            exited = asyncio.create_task(next_exit(supervisor, seen))
            await asyncio.wait([stopping, exited], return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                exited.cancel()
                return False
            child = exited.result()
            seen.add((child.name, child.starts))
            code = child.process.returncode if child.process is not None else None
            if not reload:
                say("devstack", f"{child.name} exited unexpectedly ({code})")
                return code != 0
            say("devstack", f"{child.name} exited ({code}): it restarts when a file it runs is saved")
    finally:
        stopping.cancel()


async def next_exit(supervisor: Supervisor, seen: set[tuple[str, int]]) -> Child:
    def unseen() -> list[Child]:
        return [child for child in supervisor.exited() if (child.name, child.starts) not in seen]

    async with supervisor.changed:
        await supervisor.changed.wait_for(lambda: bool(unseen()))
        return unseen()[0]


async def find_servers(args: argparse.Namespace) -> Selection:
    servers = [postgres(args.postgres), rabbitmq(args.amqp)]
    selection = await asyncio.to_thread(
        select,
        servers,
        Machine(),
        install=args.install,
        smtp_port=args.smtp_port,
        say=lambda line: say("devstack", line),
    )
    for choice in selection.choices:
        say("devstack", choice.line())
    for problem in selection.problems:
        say("devstack", problem)
    return selection


async def main() -> int:
    args = parse_args()
    selection = await find_servers(args)
    try:
        if any(choice.source is Source.MISSING for choice in selection.choices):
            return 1
        args.postgres, args.amqp = selection.url("postgres"), selection.url("rabbitmq")
        await prepare(args)
        if args.migrate_only:
            return 0
        if args.no_smtp_sink or selection.mailpit:
            return await serve(args, selection)
        with smtp_sink(args.smtp_port):
            return await serve(args, selection)
    finally:
        if selection.stop is not None:
            if args.keep_servers:
                say("devstack", f"containers kept running; stop them with `{shlex.join(selection.stop)}`")
            else:
                say("devstack", "stopping the containers (make dev KEEP=1 keeps them)")
                await asyncio.to_thread(Machine().run, selection.stop, None)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
