"""Scenario 11: a three-node RabbitMQ cluster loses a node, twice, during a burst of 300 orders.

Promise: with quorum queues (`QUEUE_TYPE=quorum`, as the prod overlay sets it), the loss of one node of three loses no
event and sends no email twice. The queues are replicated on all three nodes; a majority (two)
keeps accepting, confirming and delivering; clients connected to the dead node reconnect
through the cluster's address to a live one.

The cluster is three nodes of the machine's own RabbitMQ installation (rabbit_cluster.py),
never the node on 5672. The services reach it through a TCP proxy of the test's own that plays
the cluster's Kubernetes Service: each new connection goes to a live node. Real worker processes
run the orders relay and the notifications consumer and sender.

The burst is placed in four waves of 75 orders: with every node up, then the node leading
`notifications.events` is SIGKILLed at once (the wave's events may still be in the relay, the
queue or the consumer); with that node down; with it back; and with the node leading the queue
then SIGKILLed in turn. The failover time is measured from the kill to the first `list_queues`
that names a new leader: an upper bound, each CLI call taking about a second. One node is down at a time, so
a majority always stands. Each wait is for a state the cluster or the database reports, bounded.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rabbit_cluster import RabbitCluster, rabbitmq_scripts

from fastmicro.messaging import Broker, Topology
from fastmicro.testing import ServiceProcess, TcpProxy, migrated_database
from fastmicro.testing.plugin import DatabaseFactory, ProcessFactory
from fault_stack import SERVICES, FaultStack, MailSink, eventually
from figures import Figure, Record
from scenarios import mails_to, sent
from workers import (
    duplicates,
    emails_of,
    message_id_counts,
    notifications_per_event,
    place_orders,
    publish_users,
    start_worker,
)

ORDERS = 300
WAVES = 4
USERS = 20
DRAIN = 60.0  # seconds for the last wave to be handled and mailed once the cluster is whole: generous, not a target
# Few database connections: the scenario is about the broker, and the machine's PostgreSQL is shared.
# Quorum queues, as the prod overlay sets them for its three nodes (one node defaults to classic).
SMALL = {"db_pool_size": 5, "consumer_prefetch": 5, "queue_type": "quorum"}
PLACING = 4  # orders written at once


@pytest.fixture
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RabbitCluster]:
    scripts = rabbitmq_scripts()
    if scripts is None:
        reason = "RabbitMQ server binaries (rabbitmq-server, rabbitmqctl) are absent: no cluster to start"
        if os.environ.get("REQUIRE_INTEGRATION"):
            pytest.fail(reason)
        pytest.skip(reason)
    # Short: an Erlang node name and its socket paths stay well under the system's limits.
    home = Path(tmp_path_factory.mktemp("rmq"))
    cluster = RabbitCluster.create(scripts, home, uuid.uuid4().hex[:6])
    try:
        await cluster.form()
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def cluster_stack(
    cluster: RabbitCluster, database_factory: DatabaseFactory, amqp_namespace: str, mail: MailSink
) -> AsyncIterator[tuple[FaultStack, TcpProxy]]:
    """The stack on the cluster, through the proxy that stands for the cluster's Service."""
    first, *others = cluster.nodes
    proxy = await TcpProxy("127.0.0.1", first.amqp_port, also=tuple(("127.0.0.1", n.amqp_port) for n in others)).start()
    amqp_url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    databases = {
        service: await migrated_database(database_factory, service, f"{service}:migrations") for service in SERVICES
    }
    namespace = f"{amqp_namespace}c."
    broker = Broker(amqp_url, Topology(namespace, "quorum"))
    stack = FaultStack(namespace, amqp_url, databases, mail, broker)
    for name, service in SERVICES.items():
        await service.declare_topology(stack.settings(name, queue_type="quorum"))
    try:
        yield stack, proxy
    finally:
        await stack.close()
        await broker.close()
        await proxy.close()


@pytest.mark.timeout(420)  # three nodes boot, two restart; each CLI call is a second of a loaded machine
async def test_a_cluster_that_loses_a_node_twice_mid_burst_loses_no_event_and_sends_no_email_twice(
    cluster: RabbitCluster,
    cluster_stack: tuple[FaultStack, TcpProxy],
    service_process: ProcessFactory,
    record: Record,
) -> None:
    stack, proxy = cluster_stack
    queue = f"{stack.namespace}notifications.events"
    assert len((await cluster.queue(queue))["members"]) == 3  # replicated on every node

    consumer = await start_worker(service_process, stack, "notifications", "notifications-worker", **SMALL)
    relay = await start_worker(service_process, stack, "orders", "orders-worker", **SMALL)
    users = await publish_users(stack, USERS)

    async def welcomed() -> bool:
        return len(await notifications_per_event(stack, "welcome")) == USERS

    await eventually(welcomed, within=30, what="the users' welcome notifications")
    user_ids = [uuid.UUID(str(user.data["user_id"])) for user in users]
    wave = ORDERS // WAVES

    failovers: list[float] = []
    rejoins: list[float] = []
    killed_nodes = []
    began = time.monotonic()
    for _ in range(2):
        await place_orders(stack, user_ids, wave, concurrency=PLACING)  # every node up
        leader = await cluster.leader(queue)
        assert leader not in killed_nodes  # the second kill takes another node
        await cluster.kill(leader)
        killed_nodes.append(leader)
        failovers.append(await cluster.wait_queue(queue, leader_not=leader))  # a new leader, from the kill on
        progress(began, f"killed {leader.name}; new leader after {failovers[-1]:.1f}s")
        await place_orders(stack, user_ids, wave, concurrency=PLACING)  # with one node down
        restarted = time.monotonic()
        await cluster.restart(leader)
        await cluster.wait_queue(queue, online=3)  # the node is a live member of the queue again
        rejoins.append(time.monotonic() - restarted)
        progress(began, f"{leader.name} back online {rejoins[-1]:.1f}s after its restart")

    async def all_handled() -> bool:
        return len(await notifications_per_event(stack, "order_placed")) == ORDERS

    async def all_sent() -> bool:
        return await sent(stack, "order_placed") == ORDERS

    try:
        await eventually(all_handled, within=DRAIN, what="every order's notification")
        await eventually(all_sent, within=DRAIN, what="every order email sent")
    except AssertionError:
        await account(stack, cluster, queue, relay, consumer)
        raise
    progress(began, "every order handled and mailed")
    exit_codes = [await worker.terminate() for worker in (relay, consumer)]  # logs complete

    per_event = await notifications_per_event(stack, "order_placed")
    mails = message_id_counts(mails_to(stack, emails_of(users), "is placed"))
    absorbed = len(duplicates(consumer, "OrderPlaced"))
    unpublished = await stack.scalar("orders", "SELECT count(*) FROM outbox WHERE published_at IS NULL")
    publish_failures = len(relay.matching("outbox_relay_failed"))

    assert exit_codes == [0, 0]
    assert await stack.scalar("orders", "SELECT count(*) FROM orders") == ORDERS
    assert unpublished == 0
    assert len(per_event) == ORDERS  # 0 events lost
    assert set(per_event.values()) == {1}  # each handled once: redeliveries absorbed by the inbox
    assert len(mails) == ORDERS
    assert set(mails.values()) == {1}  # 0 duplicate emails
    assert await stack.dead_letters("notifications") == 0
    assert proxy.connections_made > 2  # clients did reconnect through the cluster's address
    record(
        Figure(
            "11 cluster node SIGKILL x2 mid-burst (quorum)",
            sent=ORDERS,
            delivered=len(per_event),
            duplicates=absorbed,
            lost=ORDERS - len(per_event),
            recovery_seconds=max(failovers),
            note=(
                f"3 nodes; leader of notifications.events killed twice ({killed_nodes[0].name.partition('@')[0]}, "
                f"{killed_nodes[1].name.partition('@')[0]}); new leader within "
                f"{', '.join(f'{s:.1f}' for s in failovers)} s of each kill; killed node back online in "
                f"{', '.join(f'{s:.1f}' for s in rejoins)} s of its restart; {proxy.connections_made} AMQP "
                f"connections through the proxy; {publish_failures} relay publish failures, retried"
            ),
        )
    )


def progress(began: float, what: str) -> None:
    print(f"cluster scenario +{time.monotonic() - began:.1f}s: {what}")  # the scenario's own account, with -s


async def account(stack: FaultStack, cluster: RabbitCluster, queue: str, *workers: ServiceProcess) -> None:
    """What the stack holds when the drain fails: where the missing events are."""
    print("handled:", len(await notifications_per_event(stack, "order_placed")))
    print("unpublished:", await stack.scalar("orders", "SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    print("queue:", await cluster.queue(queue))
    out = await cluster.ctl(cluster.live()[0], "list_queues", "-q", "name", "messages_ready", "messages_unacknowledged")
    print(out)
    placed = await stack.rows("orders", "SELECT id FROM outbox WHERE routing_key = 'orders.OrderPlaced'")
    handled = set(await notifications_per_event(stack, "order_placed"))
    print(f"placed {len(placed)}; not handled: {[str(i) for (i,) in placed if str(i) not in handled]}")
    for worker in workers:
        print(worker.name, Counter((line.get("event"), line.get("level")) for line in worker.logs).most_common(30))
