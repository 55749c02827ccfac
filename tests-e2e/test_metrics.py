"""/metrics of every process of the stack, scraped around a journey: each metric there, each one exercised moved.

The journey goes through the HTTP APIs (register, log in, order, cancel, delete) and, for what no
client can provoke, publishes as a producer would: one event twice (a duplicate), an OrderPlaced
for a user notifications has never heard of (retried), a body no consumer can parse (dead-lettered),
and a UserCreated whose address the SMTP server refuses for good (a failed email).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from test_journey import PASSWORD, eventually

from e2e_stack import REFUSED, Stack
from fastmicro.events import Envelope
from fastmicro.messaging import Broker, Topology
from fastmicro.settings import ServiceSettings
from fastmicro.testing import publish_envelope, publish_raw
from fastmicro_contracts.money import Money
from fastmicro_contracts.orders import OrderLine, OrderPlaced
from fastmicro_contracts.users import UserCreated

ROOT = Path(__file__).resolve().parents[1]
_POOL = ServiceSettings.model_fields
#: The most connections a process's pool holds: DB_POOL_SIZE + DB_MAX_OVERFLOW (the stack's defaults).
POOL_MAX = _POOL["db_pool_size"].default + _POOL["db_max_overflow"].default
Labels = frozenset[tuple[str, str]]
#: One scrape: (sample name, labels) -> value.
Scrape = dict[tuple[str, Labels], float]


def parse(text: str) -> tuple[Scrape, set[str]]:
    """The samples of a scrape, and the names of the metric families that have at least one."""
    samples: Scrape = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
            families.update({family.name, sample.name})
    return samples, families


async def scrape_all(stack: Stack) -> dict[str, tuple[Scrape, set[str]]]:
    """Every process's scrape: `<service>` (its API) and `<service>-worker`."""
    endpoints = {name: f"{url}/metrics" for name, url in stack.urls.items()}
    endpoints |= {f"{name}-worker": url for name, url in stack.worker_metrics.items()}
    async with httpx.AsyncClient(timeout=10) as client:
        answers = await asyncio.gather(*(client.get(url) for url in endpoints.values()))
    for name, answer in zip(endpoints, answers, strict=True):
        assert answer.status_code == 200, (name, answer.text)
    return {name: parse(answer.text) for name, answer in zip(endpoints, answers, strict=True)}


def total(scrape: Scrape, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in scrape.items() if sample == name and wanted <= have)


def documented_metrics() -> set[str]:
    """The metric names the Metrics table of docs/operations.md lists."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("### Metrics", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)`", section, flags=re.MULTILINE))


async def journey_over_http(stack: Stack) -> None:
    """Register, log in, order, cancel twice (200, then 409), wait for the three mails, delete the account."""
    email = f"metrics-{uuid.uuid4().hex[:8]}@example.com"
    async with (
        stack.client("users") as users,
        stack.client("orders") as orders,
        stack.client("notifications") as notifications,
    ):
        created = await users.post("/users", json={"email": email, "password": PASSWORD, "name": "Metrics"})
        assert created.status_code == 201, created.text
        login = await users.post("/auth/token", data={"username": email, "password": PASSWORD})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        body = {"items": [{"sku": "BOOK-1", "quantity": 1, "unit_price": 900}]}
        order = (await orders.post("/orders", json=body, headers=auth)).json()
        assert (await orders.post(f"/orders/{order['id']}/cancel", headers=auth)).status_code == 200
        assert (await orders.post(f"/orders/{order['id']}/cancel", headers=auth)).status_code == 409

        async def all_sent() -> bool:
            items = (await notifications.get("/notifications", headers=auth)).json()["items"]
            return len(items) == 3 and all(n["status"] == "sent" for n in items)

        await eventually(all_sent)
        assert (await users.delete(f"/users/{created.json()['id']}", headers=auth)).status_code == 204


async def publish_what_no_client_can(stack: Stack) -> None:
    """A duplicate, a refused address, an event ahead of what it needs, a body no consumer can read."""
    refused = Envelope.wrap(
        UserCreated(user_id=uuid.uuid4(), email=f"{REFUSED}{uuid.uuid4().hex[:8]}@example.com", name="Refused")
    )
    early = Envelope.wrap(
        OrderPlaced(
            order_id=uuid.uuid4(),
            user_id=uuid.uuid4(),  # no UserCreated will ever come: retried until it is dead-lettered
            items=(OrderLine(sku="EARLY-1", quantity=1, unit_price=100),),
            total=Money(amount="1.00", currency="USD"),
        )
    )
    broker = Broker(stack.amqp_url, Topology(stack.namespace))
    try:
        await publish_envelope(broker, refused)
        await publish_envelope(broker, refused)
        await publish_envelope(broker, early)
        await publish_raw(broker, "users.UserCreated", b"{not json", message_id=str(uuid.uuid4()))
    finally:
        await broker.close()


async def test_a_journey_moves_every_metric_it_exercises(stack: Stack) -> None:
    before = await scrape_all(stack)
    await journey_over_http(stack)
    await publish_what_no_client_can(stack)

    def moved(service: str, name: str, by: float = 1, **labels: str) -> Callable[[dict[str, Scrape]], bool]:
        def check(now: dict[str, Scrape]) -> bool:
            return total(now[service], name, **labels) - total(then[service], name, **labels) >= by

        check.__name__ = f"{service}: {name}{labels or ''} +{by}"
        return check

    then = {name: samples for name, (samples, _) in before.items()}
    dead_queue = f"{stack.namespace}notifications.events.dead"
    expectations = [
        moved("users", "http_requests_total", method="POST", route="/users", status="201"),
        moved("users", "http_request_duration_seconds_count", method="POST", route="/users"),
        moved("orders", "http_requests_total", method="POST", route="/orders/{order_id}/cancel", status="409"),
        moved("orders", "http_request_duration_seconds_count", method="POST", route="/orders/{order_id}/cancel", by=2),
        moved("users-worker", "outbox_published_total", by=2),  # UserCreated, UserDeleted
        moved("users-worker", "outbox_batch_size_count"),
        moved("orders-worker", "outbox_published_total", by=2),  # OrderPlaced, OrderCancelled
        moved("orders-worker", "consumer_messages_total", event_type="UserDeleted", outcome="handled"),
        moved("orders-worker", "consumer_handler_duration_seconds_count", event_type="UserDeleted"),
        moved("notifications-worker", "consumer_messages_total", by=2, event_type="UserCreated", outcome="handled"),
        moved("notifications-worker", "consumer_messages_total", event_type="UserCreated", outcome="duplicate"),
        moved("notifications-worker", "consumer_messages_total", event_type="OrderPlaced", outcome="retried"),
        moved("notifications-worker", "consumer_messages_total", outcome="dead_lettered"),
        moved("notifications-worker", "consumer_handler_duration_seconds_count", by=2, event_type="UserCreated"),
        moved("notifications-worker", "notifications_emails_total", by=3, outcome="sent"),
        moved("notifications-worker", "notifications_emails_total", outcome="rejected"),
        moved("notifications", "consumer_queue_messages", queue=dead_queue, kind="dead"),
    ]

    async def all_moved() -> list[str] | None:
        now = {name: samples for name, (samples, _) in (await scrape_all(stack)).items()}
        return None if all(check(now) for check in expectations) else [c.__name__ for c in expectations if not c(now)]

    async def settled() -> bool:
        return (await all_moved()) is None

    try:
        await eventually(settled, within=30, every=0.25)
    except AssertionError:
        raise AssertionError(f"not moved within 30 s: {await all_moved()}") from None

    # The early OrderPlaced waits in a retry queue between its attempts (1 s, 5 s, 30 s, ...).
    async def retrying() -> bool:
        scrape, _ = (await scrape_all(stack))["notifications"]
        return total(scrape, "consumer_queue_messages", kind="retry") >= 1

    await eventually(retrying, within=30, every=0.25)

    after = await scrape_all(stack)
    for process, (samples, _) in after.items():
        service = process.removesuffix("-worker")
        assert {dict(labels).get("service") for _, labels in samples} == {service}, process
        in_use = total(samples, "db_pool_connections_in_use")
        assert 0 <= in_use <= POOL_MAX, (process, in_use)
        routes = {dict(labels).get("route") for name, labels in samples if name == "http_requests_total"}
        assert not {route for route in routes if route and re.search(r"[0-9a-f]{8}-", route)}, routes
    for service in ("users", "orders"):  # the services with an outbox report its lag
        assert {"outbox_lag_seconds", "outbox_pending"} <= after[service][1], service
    assert "retention_purged_rows_total" in after["users-worker"][1]

    # Every metric docs/operations.md lists is in a real scrape, with samples.
    present = set().union(*(families for _, families in after.values()))
    documented = documented_metrics()
    assert len(documented) >= 13, documented  # the table was read (13 rows)
    assert documented <= present, documented - present
