"""`python -m bench [--smoke]`: every path and its raw twin, then results.json, results.md and e2e_latency.svg."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
import uvloop

from bench import broker, results
from bench.config import FULL, ROOT, SMOKE, Setup
from bench.mailbox import Mailbox
from bench.paths import e2e, http, workers
from bench.report import say, write
from bench.stack import Stack
from bench.wrk import WrkMissing, wrk_path

#: The phases, in the order they run, and the entries each gives.
PHASES = {
    "relay": ("relay",),
    "consumer": ("consumer",),
    "email_sender": ("email_sender",),
    "http": ("get_order", "get_me", "post_order"),
    "e2e_200": ("e2e_200",),
    "break_point_1w": ("break_point_1w",),
    "break_point_2w": ("break_point_2w",),
}
UNITS = {"relay": "messages/s", "consumer": "messages/s", "email_sender": "mails/s"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every path once, tiny sizes (seconds, for CI)")
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated phases of {', '.join(PHASES)}")
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--amqp-url", default=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--db-prefix", default="bench_", help="the run's databases are <prefix><service>")
    parser.add_argument("--amqp-namespace", default="bench.", help="prefix of the run's exchanges and queues")
    parser.add_argument(
        "--base-port", type=int, default=18000, help="services on +1..3, raw twins on +1001..2, SMTP on +25"
    )
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench", help="where results.* and the plot go")
    parser.add_argument("--drop-databases", action="store_true", help="drop the run's databases at the end")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "out", help="logs and scratch files")
    return parser.parse_args()


def busy_ports(ports: list[int]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


async def run(setup: Setup, phases: list[str], *, drop_databases: bool) -> list[results.Entry]:
    stack = Stack(setup)
    end_to_end = e2e.EndToEnd(stack, Mailbox(stack.mail_record))
    entries: list[results.Entry] = []

    async def phase(name: str, measure: Callable[[], Awaitable[list[results.Entry] | results.Entry]]) -> None:
        if name not in phases:
            return
        say(name, "starting")
        try:
            measured = await measure()
        except Exception as error:  # noqa: BLE001 - a phase that fails is reported; the others still run
            say(name, f"FAILED: {error!r}")
            entries.extend(results.failed(entry, UNITS.get(entry, "requests/s"), error) for entry in PHASES[name])
            return
        entries.extend(measured if isinstance(measured, list) else [measured])

    try:
        say("bench", f"{setup.profile.name} run: databases {setup.db_prefix}*, namespace {setup.amqp_namespace!r},"
            f" ports {setup.base_port + 1}..{setup.base_port + 1002}; logs in {stack.logs}")  # fmt: skip
        await stack.prepare()
        await stack.sink()
        await phase("relay", lambda: workers.relay(stack))
        await phase("consumer", lambda: workers.consumer(stack))
        await phase("email_sender", lambda: workers.email_sender(stack, end_to_end.mailbox))
        await phase("http", lambda: http.run(stack))
        await phase("e2e_200", lambda: e2e.e2e_200(end_to_end))
        await phase("break_point_1w", lambda: e2e.break_point(end_to_end, workers=1))
        await phase("break_point_2w", lambda: e2e.break_point(end_to_end, workers=2))
    finally:
        await end_to_end.close()
        await stack.close()
        await broker.delete_namespace(setup)
        if drop_databases:
            await stack.drop_databases()
    return entries


async def main() -> int:
    args = parse_args()
    # The kernel's Publisher, used to queue events, logs through structlog: only its warnings matter here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        wrk_path()
    except WrkMissing as missing:
        sys.stderr.write(f"bench: {missing}\n")
        return 2
    setup = Setup(
        profile=SMOKE if args.smoke else FULL,
        postgres_url=args.postgres,
        amqp_url=args.amqp_url,
        db_prefix=args.db_prefix,
        amqp_namespace=args.amqp_namespace,
        base_port=args.base_port,
        results_dir=args.results_dir,
        work_dir=args.work_dir,
    )
    if busy := busy_ports(setup.ports()):
        sys.stderr.write(f"bench: ports {busy} are in use (another bench running?); choose --base-port\n")
        return 2
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    phases = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(phases) - set(PHASES):
        sys.stderr.write(f"bench: unknown phases {sorted(unknown)}; known: {', '.join(PHASES)}\n")
        return 2
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    entries = await run(setup, phases, drop_databases=args.drop_databases)
    write("")
    write(results.write(args.results_dir, entries, profile=setup.profile.name, started=started))
    plot = " and e2e_latency.svg" if "e2e_200" in phases else ""
    say("bench", f"wrote {args.results_dir / 'results.json'}, results.md{plot}")
    return 1 if any("error" in entry for entry in entries) else 0


if __name__ == "__main__":
    try:
        sys.exit(uvloop.run(main()))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM (which cancels the run)
        sys.stderr.write("bench: interrupted; every process it started has been stopped\n")
        sys.exit(130)
