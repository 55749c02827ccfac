"""`serve --workers 2`: whichever process answers a scrape, it counts the requests of both (multiprocess mode)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from fastmicro.testing import TestServers
from fastmicro.testing.ports import free_port_base

ROUTE = {"method": "GET", "route": "/health/live", "status": "200"}


def answered_per_process(directory: Path) -> dict[int, float]:
    """Each process's own count of `GET /health/live`, read from its file in the shared directory."""
    counts: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):  # type: ignore[no-untyped-call]
            for sample in metric.samples:
                if sample.name == "http_requests_total" and ROUTE.items() <= sample.labels.items():
                    counts[pid] = counts.get(pid, 0.0) + sample.value
    return counts


def value_files(directory: Path) -> set[str]:
    return {path.name for path in directory.glob("counter_*.db")}


def scraped(text: str) -> tuple[float, set[str]]:
    """The scrape's count of `GET /health/live`, and the services its samples name."""
    count, services = 0.0, set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            services.add(sample.labels.get("service", ""))
            if sample.name == "http_requests_total" and ROUTE.items() <= sample.labels.items():
                count += sample.value
    return count, services


@contextlib.asynccontextmanager
async def serving_two_processes(test_servers: TestServers, directory: Path) -> AsyncIterator[str]:
    port = free_port_base([0])
    database = make_url(test_servers.database_url).set(drivername="postgresql+asyncpg")
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "HTTP_PORT": str(port),
        "SERVE_ROLES": "false",
        "DATABASE_URL": database.render_as_string(hide_password=False),
        "AMQP_URL": test_servers.amqp_url,
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "users", "serve", "--workers", "2", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_every_scrape_counts_the_requests_of_every_process(test_servers: TestServers, tmp_path: Path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"")  # left by an earlier run: the command empties the directory
    async with serving_two_processes(test_servers, tmp_path) as url:
        # Both processes up: each has written its values' file (unlabelled counters exist from the import).
        deadline = time.monotonic() + 60
        while len(value_files(tmp_path) - {"counter_1.db"}) < 2:
            assert time.monotonic() < deadline, "two processes did not start within 60 s"
            await asyncio.sleep(0.2)
        assert "counter_1.db" not in value_files(tmp_path)

        sent = 0
        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.wait_for(_until_live(client, url), 60)
            sent += 1
            # Concurrent connections, so the two processes share them; until each has answered some.
            while len([count for count in answered_per_process(tmp_path).values() if count > 0]) < 2:
                assert sent < 2000, answered_per_process(tmp_path)
                batch = [httpx.AsyncClient(timeout=10) for _ in range(20)]
                try:
                    answers = await asyncio.gather(*(each.get(f"{url}/health/live") for each in batch))
                finally:
                    await asyncio.gather(*(each.aclose() for each in batch))
                assert all(answer.status_code == 200 for answer in answers)
                sent += len(answers)

            per_process = answered_per_process(tmp_path)
            assert sum(per_process.values()) == sent, per_process
            for _ in range(10):  # each on a new connection: whichever process answers, the sum of both
                async with httpx.AsyncClient(timeout=10) as fresh:
                    response = await fresh.get(f"{url}/metrics")
                assert response.status_code == 200
                count, services = scraped(response.text)
                assert count == sent, (count, sent, per_process)
                assert services == {"users"}


async def _until_live(client: httpx.AsyncClient, url: str) -> None:
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(f"{url}/health/live")).status_code == 200:
                return
        await asyncio.sleep(0.2)
