"""A worker's own /metrics server, and the queue depths read from a real broker at scrape time."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest
from prometheus_client import REGISTRY

from fastmicro.exposition import serve_worker_metrics
from fastmicro.messaging import Broker, Topology
from fastmicro.queue_depth import QueueDepths
from fastmicro.testing import TestServers
from fastmicro.testing.plugin import ProxyFactory

TOKEN = "a-token-of-the-cluster-0123456789abcdef"


def depth(queue: str) -> float | None:
    return REGISTRY.get_sample_value("consumer_queue_messages", {"queue": queue, "kind": "dead"})


async def test_a_worker_serves_its_metrics_behind_the_token() -> None:
    async with serve_worker_metrics("kernel-test", "127.0.0.1", 0, TOKEN) as port, httpx.AsyncClient() as client:
        assert port is not None
        url = f"http://127.0.0.1:{port}"
        assert (await client.get(f"{url}/metrics")).status_code == 401
        assert (await client.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await client.get(f"{url}/other", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 404
        answer = await client.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'outbox_published_total{service="kernel-test"}' in answer.text


async def test_a_port_in_use_leaves_the_worker_running_without_metrics() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        async with serve_worker_metrics("kernel-test", "127.0.0.1", taken.getsockname()[1], None) as port:
            assert port is None


@pytest.fixture
async def dead_queue(test_servers: TestServers, amqp_namespace: str, queues_to_delete: list[str]) -> AsyncIterator[str]:
    """A queue of this test's own holding two messages, as a dead-letter queue would."""
    name = f"{amqp_namespace}depth-{uuid.uuid4().hex[:8]}.events.dead"
    queues_to_delete.append(name)
    connection = await aio_pika.connect(test_servers.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(name, durable=True)
        for body in (b"one", b"two"):
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=name)
        yield name
    finally:
        await connection.close()


async def test_queue_depths_are_read_from_the_broker_and_kept_while_it_is_away(
    dead_queue: str, test_servers: TestServers, tcp_proxy: ProxyFactory, amqp_namespace: str
) -> None:
    proxy = await tcp_proxy(test_servers.amqp_url)
    broker = Broker(proxy.url_for(test_servers.amqp_url), Topology(amqp_namespace), connect_timeout=1.0)
    depths = QueueDepths(broker, [(dead_queue, "dead")], timeout=1.0)
    try:
        assert await depths.refresh()
        assert depth(dead_queue) == 2

        await proxy.cut()
        started = time.monotonic()
        assert not await depths.refresh()
        assert time.monotonic() - started < 1.0 + 0.5  # bounded by its timeout
        assert depth(dead_queue) == 2  # the last value stays

        await proxy.restore()
        missing = QueueDepths(broker, [(f"{dead_queue}.missing", "dead"), (dead_queue, "dead")], timeout=5.0)
        assert not await missing.refresh()  # a queue that does not exist is an unread figure, not an error
    finally:
        await proxy.restore()
        await broker.close()
