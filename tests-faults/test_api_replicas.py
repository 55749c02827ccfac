"""Scenario 11: two API processes of orders behind one address (`serve` with HTTP_WORKERS=2) over a burst.

Promise: the API runs in several processes on one port (uvicorn's workers: the kernel hands each
new connection to one of them) with nothing shared in memory: every request is answered, each
order is placed once, and /metrics, whichever process answers it, counts the requests of both
(prometheus_client's multiprocess mode, a directory of files the processes share). The burst
opens a new connection per request, so both processes take connections; how many each takes is
the kernel's choice, so it is reported, not asserted.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from fastmicro.testing.plugin import ProcessFactory
from fault_stack import ONE_ITEM, FaultStack, free_port
from figures import Figure, Record

ORDERS = 200
CLIENTS = 20  # requests in flight at once
PROCESSES = 2
#: Each process's pool: small, since the test's PostgreSQL serves other suites too.
POOL = 5
#: Attempts per order under its Idempotency-Key, should the database refuse a connection (503).
RETRIES = 5


async def test_two_api_processes_behind_one_port_serve_a_burst_without_an_error(
    stack: FaultStack, service_process: ProcessFactory, record: Record, tmp_path: Path
) -> None:
    port = free_port()
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = stack.env(
        "orders", serve_roles=False, http_workers=PROCESSES, http_host="127.0.0.1", http_port=port, db_pool_size=POOL
    )
    api = await service_process(
        "orders",
        "serve",
        env={**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        name="orders-api",
        ready="service_started",
    )
    try:
        await api.wait_for("service_started", count=PROCESSES)
        pids = {line["pid"] for line in api.matching("service_started")}
        users = [uuid.uuid4() for _ in range(CLIENTS)]
        gate = asyncio.Semaphore(CLIENTS)
        unavailable: list[int] = []
        # No keep-alive: each request is a connection of its own, handed to either process.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:

            async def place(n: int) -> httpx.Response:
                headers = {**stack.bearer(users[n % CLIENTS]), "Idempotency-Key": f"burst-{n}"}
                async with gate:
                    for _ in range(RETRIES):
                        response = await client.post("/orders", json={"items": ONE_ITEM}, headers=headers)
                        if response.status_code != 503:
                            return response
                        unavailable.append(n)  # the shared server out of connections: retried, as clients do
                        await asyncio.sleep(0.1)
                    return response

            responses = await asyncio.gather(*(place(n) for n in range(ORDERS)))
            scraped = (await client.get("/metrics")).text
    finally:
        exit_code = await api.terminate()

    statuses = [response.status_code for response in responses]
    placed = {response.json()["id"] for response in responses if response.status_code == 201}
    served = {pid: posts_answered(metrics / f"counter_{pid}.db") for pid in pids}
    assert len(pids) == PROCESSES, pids  # two processes, each started its app
    assert statuses == [201] * ORDERS, (sorted(set(statuses)), api.matching("unhandled_error")[:2])
    assert len(placed) == ORDERS
    assert await stack.scalar("orders", "SELECT count(*) FROM orders") == ORDERS
    assert sum(served.values()) == ORDERS  # each request counted once, by the process that answered it
    assert scraped_posts(scraped) == ORDERS  # /metrics adds both processes up, whichever answers
    assert not api.matching("unhandled_error")
    assert exit_code == 0
    record(
        Figure(
            "11 two API processes of orders on one port",
            sent=ORDERS,
            delivered=len(placed),
            duplicates=0,
            lost=ORDERS - len(placed),
            note=(
                f"{CLIENTS} clients, a connection per request; the processes answered "
                f"{'/'.join(str(count) for count in served.values())}; /metrics counted {scraped_posts(scraped)}; "
                f"{len(unavailable)} 503s retried (the shared server out of connections)"
            ),
        )
    )


def posts_answered(path: Path) -> int:
    """POST /orders answered 201, from one process's own metrics file."""
    total = 0.0
    values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]  # untyped library
    for key, value, _timestamp, _position in values:
        _metric, name, labels, _help = json.loads(key)
        if name == "http_requests_total" and labels == {"method": "POST", "route": "/orders", "status": "201"}:
            total += value
    return int(total)


def scraped_posts(text: str) -> int:
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "http_requests_total"
            and sample.labels == {"method": "POST", "route": "/orders", "status": "201", "service": "orders"}
        )
    )
