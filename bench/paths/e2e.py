"""e2e_200 and the break points: the stack as `make dev` runs it, under an open-loop load of orders.

Users are registered the way POST /users leaves them (a users row and its UserCreated in the
outbox, one transaction), so their contacts reach notifications through the broker; the load
starts once every contact is known and every welcome mail is sent. Each order's latency from
placed (its `created_at`) to sent (the sink's receipt of the mail naming it) is matched by the
order id. One second after the load, the backlog is counted: outbox rows not yet published,
events still queued for notifications, notifications still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from bench import loadgen, results, seed, svgplot
from bench.broker import namespace_queues, queues
from bench.config import Setup
from bench.mailbox import Mailbox
from bench.measure import CpuMeter, machine_share, own_cpu_seconds, per_op_ms, percentile
from bench.processes import Process, poll_until
from bench.report import say
from bench.stack import Stack
from bench.tokens import JWT

#: What a break-point step must hold (issue 9's end-to-end targets).
HTTP_P99_MS = 100.0
SENT_P50_MS = 50.0
SENT_P99_MS = 250.0


@dataclass
class LoadRun:
    """The figures of one open-loop run."""

    rate: float
    seconds: float
    outcomes: list[loadgen.Outcome]
    sent_latency: dict[str, float]  # order id -> seconds from placed to the mail's receipt (inf: never came)
    backlog: dict[str, int]
    cpu_seconds: float  # the services' processes
    loadgen_cpu_seconds: float
    wall: float
    series: list[svgplot.Second] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(not outcome.ok for outcome in self.outcomes)

    @property
    def placed(self) -> int:
        return sum(outcome.ok for outcome in self.outcomes)

    def http_ms(self, fraction: float) -> float | None:
        value = percentile([o.latency for o in self.outcomes], fraction)
        return None if value is None else value * 1000

    def sent_ms(self, fraction: float) -> float | None:
        value = percentile(list(self.sent_latency.values()), fraction)
        return None if value is None else value * 1000

    @property
    def missing(self) -> int:
        return sum(math.isinf(latency) for latency in self.sent_latency.values())

    def holds(self) -> bool:
        http_p99, p50, p99 = self.http_ms(0.99), self.sent_ms(0.5), self.sent_ms(0.99)
        return (
            self.errors == 0
            and self.placed > 0
            and http_p99 is not None
            and http_p99 <= HTTP_P99_MS
            and p50 is not None
            and p50 <= SENT_P50_MS
            and p99 is not None
            and p99 <= SENT_P99_MS
        )

    def summary(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "placed": self.placed,
            "errors": self.errors,
            "http_p50_ms": _ms(self.http_ms(0.5)),
            "http_p99_ms": _ms(self.http_ms(0.99)),
            "p50_ms": _ms(self.sent_ms(0.5)),
            "p99_ms": _ms(self.sent_ms(0.99)),
            "emails_missing": self.missing,
            "backlog_after_1s": sum(self.backlog.values()),
            "backlog_detail": self.backlog,
            "cpu_ms_per_op": _ms(per_op_ms(self.cpu_seconds, self.placed)),
            "loadgen_cpu_share": round(machine_share(self.loadgen_cpu_seconds, self.wall), 3),
            "passed": self.holds(),
        }


def _ms(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 2)


class EndToEnd:
    def __init__(self, stack: Stack, mailbox: Mailbox) -> None:
        self.stack = stack
        self.setup: Setup = stack.setup
        self.mailbox = mailbox
        self.tokens: list[str] = []
        self._running: list[Process] = []
        self._workers = 0
        self._clean = False  # the last run left no backlog and no mail behind

    async def start(self, *, workers: int) -> list[Process]:
        """Users, orders and notifications as deployed, each `serve` with `workers` processes beside as many `worker`s.

        The stack of the previous run is kept when it has as many workers and left nothing
        behind; otherwise it is stopped, what it left undone is dropped, and a fresh one starts.
        """
        if self._running and self._workers == workers and self._clean:
            return self._running
        await self.close()
        await reset(self.setup)
        services = ("users", "orders", "notifications")
        self._running = list(
            await asyncio.gather(
                *(self.stack.serve(service, workers=workers) for service in services),
                *(self.stack.worker(service, number=n) for service in services for n in range(1, workers + 1)),
            )
        )
        self._workers = workers
        if not self.tokens:
            self.tokens = await self._register_users()
        rate, seconds = self.setup.profile.e2e_warmup
        if rate and seconds:
            warm = await self.load(
                self._running, rate=rate, seconds=seconds, mail_wait=self.setup.profile.drain_timeout
            )
            say("e2e", f"{workers} worker(s) per service, warm-up (not counted): {_line(warm.summary())}")
        return self._running

    async def close(self) -> None:
        await self.stack.stop(*self._running)
        self._running = []

    async def _register_users(self) -> list[str]:
        users = seed.make_users(self.setup.profile.users, "e2e")
        await seed.insert_users(self.setup.dsn("users"), users, announce=True)
        ids = [user.id for user in users]
        connection = await asyncpg.connect(self.setup.dsn("notifications"))
        try:

            async def welcomed() -> bool:
                sent = await connection.fetchval(
                    "SELECT count(*) FROM notifications WHERE kind = 'welcome' AND status = 'sent'"
                    " AND user_id = ANY($1::uuid[])",
                    ids,
                )
                return bool(sent == len(ids))

            await poll_until(welcomed, what="every e2e user's contact and welcome mail", within=120, interval=0.05)
        finally:
            await connection.close()
        say("e2e", f"{len(users)} users registered; contacts known and welcome mails sent")
        return JWT.mint(ids)

    async def load(self, processes: list[Process], *, rate: float, seconds: float, mail_wait: float) -> LoadRun:
        url = urlsplit(self.setup.url("orders"))
        body = orjson.dumps(seed.ORDER_BODY)
        meter = CpuMeter(processes).start()
        own = own_cpu_seconds()
        outcomes = await loadgen.place_orders(
            url.hostname or "127.0.0.1", url.port or 80, self.tokens, body, rate=rate, seconds=seconds
        )
        cpu, wall = meter.stop()
        loadgen_cpu = own_cpu_seconds() - own
        load_ended = time.monotonic()
        await asyncio.sleep(max(0.0, load_ended + 1.0 - time.monotonic()))  # the target: nothing left 1 s after
        backlog = await backlog_of(self.setup)
        placed = {o.order_id: o.placed_at for o in outcomes if o.ok and o.order_id and o.placed_at}
        received = await self._mails_for(set(placed), mail_wait)
        latency = {order: received.get(order, math.inf) - at for order, at in placed.items()}
        run = LoadRun(rate, seconds, outcomes, latency, backlog, cpu, loadgen_cpu, wall)
        self._clean = not any(backlog.values()) and run.missing == 0
        run.series = svgplot.per_second(outcomes, latency)
        return run

    async def _mails_for(self, orders: set[str], within: float) -> dict[str, float]:
        """Receipt time of the order_placed mail of each of `orders` that came within `within` seconds."""
        received: dict[str, float] = {}

        async def all_received() -> bool:
            for mail in self.mailbox.refresh().mails:
                if mail.order_id in orders and mail.order_id not in received:
                    received[mail.order_id] = mail.received_at
            return len(received) == len(orders)

        with contextlib.suppress(TimeoutError):
            await poll_until(all_received, what="the order mails", within=within, interval=0.05)
        return received


async def backlog_of(setup: Setup) -> dict[str, int]:
    counts: dict[str, int] = {}
    for service in ("users", "orders"):
        connection = await asyncpg.connect(setup.dsn(service))
        try:
            counts[f"{service}_outbox_unpublished"] = int(
                await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )
        finally:
            await connection.close()
    async with queues(setup) as broker:
        counts["notifications_queued"] = await broker.depth(setup.queue("notifications"))
    connection = await asyncpg.connect(setup.dsn("notifications"))
    try:
        counts["notifications_pending"] = int(
            await connection.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'")
        )
    finally:
        await connection.close()
    return counts


async def reset(setup: Setup) -> None:
    """With no service running: drop what an earlier run left undone, so that a run starts idle."""
    for service in ("users", "orders"):
        connection = await asyncpg.connect(setup.dsn(service))
        try:
            await connection.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
        finally:
            await connection.close()
    async with queues(setup) as broker:
        await broker.purge(*namespace_queues(setup))
    connection = await asyncpg.connect(setup.dsn("notifications"))
    try:
        await connection.execute(
            "UPDATE notifications SET status = 'failed', last_error = 'reset by the bench' WHERE status = 'pending'"
        )
    finally:
        await connection.close()


async def e2e_200(run: EndToEnd) -> results.Entry:
    stack = run.stack
    profile = stack.setup.profile
    processes = await run.start(workers=1)
    figures = await run.load(
        processes, rate=profile.e2e_rate, seconds=profile.e2e_seconds, mail_wait=profile.drain_timeout
    )
    summary = figures.summary()
    say("e2e_200", _line(summary))
    svg = svgplot.latency_svg(figures.series, title=f"e2e: {profile.e2e_rate} orders/s for {profile.e2e_seconds:g} s")
    (stack.setup.results_dir / "e2e_latency.svg").write_text(svg)
    return {
        "name": "e2e_200",
        "unit": "orders/s",
        "project": round(figures.placed / figures.seconds, 1),
        "raw": None,
        "ratio": None,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "cpu_ms_per_op": summary["cpu_ms_per_op"],
        "errors": summary["errors"],
        "http_p50_ms": summary["http_p50_ms"],
        "http_p99_ms": summary["http_p99_ms"],
        "backlog_after_1s": summary["backlog_after_1s"],
        "backlog_detail": summary["backlog_detail"],
        "emails_missing": summary["emails_missing"],
        "loadgen_cpu_share": summary["loadgen_cpu_share"],
        "offered_rate": profile.e2e_rate,
        "seconds": profile.e2e_seconds,
        "orders_placed": summary["placed"],
        "error_samples": sorted({o.error or "" for o in figures.outcomes if not o.ok})[:5],
    }


async def break_point(run: EndToEnd, *, workers: int) -> results.Entry:
    """Step the rate up until a step misses the end-to-end targets; the highest rate that held."""
    stack = run.stack
    profile = stack.setup.profile
    name = f"break_point_{workers}w"
    processes = await run.start(workers=workers)
    steps: list[dict[str, Any]] = []
    for rate in profile.break_point_rates:
        figures = await run.load(
            processes, rate=rate, seconds=profile.break_point_seconds, mail_wait=min(profile.drain_timeout, 10.0)
        )
        steps.append(figures.summary())
        say(name, _line(steps[-1]))
        if not figures.holds():
            break
    held = [step for step in steps if step["passed"]]
    best = held[-1] if held else None
    return {
        "name": name,
        "unit": "orders/s",
        "project": best["rate"] if best else 0,
        "raw": None,
        "ratio": None,
        "p50_ms": best["p50_ms"] if best else None,
        "p99_ms": best["p99_ms"] if best else None,
        "cpu_ms_per_op": best["cpu_ms_per_op"] if best else None,
        "http_p99_ms": best["http_p99_ms"] if best else None,
        "errors": best["errors"] if best else None,
        "loadgen_cpu_share": best["loadgen_cpu_share"] if best else None,
        "workers": workers,
        "steps": steps,
    }


def _line(summary: dict[str, Any]) -> str:
    return (
        f"{summary['rate']}/s x {summary['seconds']:g} s: {summary['placed']} placed, {summary['errors']} errors,"
        f" HTTP p50/p99 {summary['http_p50_ms']}/{summary['http_p99_ms']} ms, placed→sent p50/p99"
        f" {summary['p50_ms']}/{summary['p99_ms']} ms, {summary['emails_missing']} mails missing,"
        f" backlog {summary['backlog_after_1s']} -> {'held' if summary['passed'] else 'missed'}"
    )
