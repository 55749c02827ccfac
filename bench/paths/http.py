"""get_order, get_me, post_order: wrk against the project's service and against its raw twin, alternately.

While one side is measured, every other process of the phase is paused (SIGSTOP), so the
project's relay does not publish the raw twin's outbox rows on the CPUs the raw twin is
measured on; after each POST round the relay catches up before the next round starts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from bench import identity, results, seed
from bench.broker import queues
from bench.measure import CpuMeter, Sample, machine_share, per_op_ms
from bench.processes import Process, poll_until
from bench.report import say
from bench.stack import Stack
from bench.tokens import JWT
from bench.wrk import LUA, Load, run_wrk


@dataclass(frozen=True)
class Route:
    name: str
    service: str
    project: Load
    raw: Load


async def run(stack: Stack) -> list[results.Entry]:
    setup, profile = stack.setup, stack.setup.profile
    users = seed.make_users(profile.users, "http")
    await seed.insert_users(setup.dsn("users"), users, announce=False)
    tokens = JWT.mint([user.id for user in users])
    token_file = setup.work_dir / "tokens.txt"
    token_file.write_text("\n".join(tokens) + "\n")

    project = dict(
        zip(("users", "orders"), await asyncio.gather(stack.serve("users"), stack.serve("orders")), strict=True)
    )
    raw = dict(zip(("users", "orders"), await asyncio.gather(stack.raw("users"), stack.raw("orders")), strict=True))
    relay = await stack.worker("orders")  # as deployed, the API leaves publishing to its worker (SERVE_ROLES=false)
    everything = [*project.values(), *raw.values(), relay]
    try:
        order_id = await _place_order(setup.url("orders"), tokens[0])
        same = await identity.check(setup, tokens[0], order_id)
        say("http", f"raw bodies byte-identical: {same.identical}")
        for difference in same.differences:
            say("http", f"DIFFERS {difference}")
        paths = _paths(stack, tokens[0], order_id, token_file)
        entries = []
        for path in paths:
            try:
                entries.append(
                    await _measure(
                        stack, path, project=project, raw=raw, everything=everything, identical=same.identical
                    )
                )
            except Exception as error:  # noqa: BLE001 - one path failing leaves the others to measure
                say(path.name, f"FAILED: {error!r}")
                entries.append(results.failed(path.name, "requests/s", error))
        return entries
    finally:
        await stack.stop(*everything)
        async with queues(setup) as broker:  # the OrderPlaced of the POST rounds: no one here reads them
            await broker.purge(setup.queue("notifications"))


def _paths(stack: Stack, token: str, order_id: str, token_file: Path) -> list[Route]:
    setup, profile = stack.setup, stack.setup.profile
    auth = (f"Authorization: Bearer {token}",)

    def load(base: str, route: str, **extra: object) -> Load:
        return Load(
            url=f"{base}{route}",
            threads=profile.wrk_threads,
            connections=profile.wrk_connections,
            seconds=profile.wrk_seconds,
            **extra,  # type: ignore[arg-type]
        )

    post = {"script": LUA / "post_order.lua", "script_args": (str(token_file),)}
    return [
        Route("get_order", "orders", load(setup.url("orders"), f"/orders/{order_id}", headers=auth),
             load(setup.raw_url("orders"), f"/orders/{order_id}", headers=auth)),
        Route("get_me", "users", load(setup.url("users"), "/users/me", headers=auth),
             load(setup.raw_url("users"), "/users/me", headers=auth)),
        Route("post_order", "orders", load(setup.url("orders"), "", **post), load(setup.raw_url("orders"), "", **post)),
    ]  # fmt: skip


async def _measure(
    stack: Stack,
    path: Route,
    *,
    project: dict[str, Process],
    raw: dict[str, Process],
    everything: list[Process],
    identical: dict[str, bool],
) -> results.Entry:
    profile = stack.setup.profile
    sides = {"project": (path.project, project[path.service]), "raw": (path.raw, raw[path.service])}
    if profile.warmup_seconds:
        for load, process in sides.values():
            warm = Load(load.url, load.threads, load.connections, profile.warmup_seconds, load.headers, load.script,
                        load.script_args)  # fmt: skip
            await _one(stack, warm, process, everything)
            await _caught_up(stack, path)
    samples: dict[str, list[Sample]] = {"project": [], "raw": []}
    for number in range(1, profile.rounds + 1):
        for side, (load, process) in sides.items():
            sample = await _one(stack, load, process, everything)
            samples[side].append(sample)
            say(
                path.name,
                f"round {number}/{profile.rounds} {side:<7} {sample.rate:8.1f} req/s  p50 {sample.p50_ms:.1f}"
                f" p99 {sample.p99_ms:.1f} ms  cpu {sample.cpu_ms_per_op or 0:.2f} ms/req  errors {sample.errors}",
            )
            await _caught_up(stack, path)
    return results.compared(
        path.name, "requests/s", samples["project"], samples["raw"], raw_body_identical=identical.get(path.name)
    )


async def _one(stack: Stack, load: Load, under_test: Process, everything: list[Process]) -> Sample:
    """One wrk run against `under_test`, every other process of the phase paused meanwhile."""
    others = [process for process in everything if process is not under_test]
    for process in others:
        process.pause()
    try:
        meter = CpuMeter([under_test]).start()
        run = await run_wrk(load, stack.setup.work_dir, stack.logs / "wrk.log")
        cpu, wall = meter.stop()
    finally:
        for process in others:
            process.resume()
    ok = run.requests - run.errors
    return Sample(
        rate=run.ok_per_second,
        ops=ok,
        seconds=run.seconds,
        cpu_ms_per_op=per_op_ms(cpu, ok),
        loadgen_cpu_share=machine_share(run.cpu_seconds, wall),
        p50_ms=run.p50_ms,
        p99_ms=run.p99_ms,
        errors=run.errors,
    )


async def _caught_up(stack: Stack, path: Route) -> None:
    """After POSTs, wait until the project's relay has published every outbox row (both sides')."""
    if path.name != "post_order":
        return
    connection = await asyncpg.connect(stack.setup.dsn("orders"))
    try:

        async def published() -> bool:
            return bool(await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0)

        within = stack.setup.profile.drain_timeout
        await poll_until(published, what="the orders relay to publish the outbox", within=within, interval=0.05)
    finally:
        await connection.close()


async def _place_order(url: str, token: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{url}/orders", json=seed.ORDER_BODY, headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        order_id: str = response.json()["id"]
        return order_id
