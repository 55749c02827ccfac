"""One trace per user action, across the services: users → notifications, users → orders → notifications.

The three services run in this process (API and background roles) with tracing on and the SDK's
in-memory exporter. A registration's trace holds the users server span, its database spans, the
notifications consumer span (twice: the first attempt is made to fail, so the hop is retried and
the retry is an event of the first span) and the SMTP send. A deletion's trace holds the users
server span, the orders consumer span that cancels the user's order, and the notifications
consumer span of that cancellation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from fastmicro import tracing
from fastmicro.consumer import RetryLater, Subscription
from fastmicro_contracts.users import UserCreated
from fault_stack import ONE_ITEM, FaultStack, eventually
from notifications import dependencies as notifications_roles
from notifications.handlers import SUBSCRIPTIONS, on_user_created
from scenarios import mails_to


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing("fastmicro-test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.disable_tracing()


@pytest.fixture
def welcome_fails_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The notifications handler of UserCreated raises RetryLater on its first call: a retried hop."""
    failed: set[uuid.UUID] = set()

    async def flaky(event: UserCreated, uow: Any) -> None:
        if event.user_id not in failed:
            failed.add(event.user_id)
            raise RetryLater("the test's one failure")
        await on_user_created(event, uow)

    subscriptions = [
        Subscription(UserCreated, flaky) if subscription.event is UserCreated else subscription
        for subscription in SUBSCRIPTIONS
    ]
    monkeypatch.setattr(notifications_roles, "SUBSCRIPTIONS", subscriptions)


def _of_trace(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.context and span.context.trace_id == trace_id]


def _server_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER and s.name == name]
    return span


def _consumers(spans: list[ReadableSpan], queue: str) -> list[ReadableSpan]:
    return [span for span in spans if span.kind == SpanKind.CONSUMER and span.name.endswith(f"{queue} process")]


async def test_a_registration_and_a_deletion_are_each_one_trace_across_the_services(
    stack: FaultStack, spans: InMemorySpanExporter, welcome_fails_once: None
) -> None:
    email = f"traced-{uuid.uuid4().hex[:12]}@example.com"
    async with stack.app("users") as users, stack.app("orders") as orders, stack.app("notifications"):
        created = await users.post("/users", json={"email": email, "name": "Traced", "password": "a long passphrase"})
        assert created.status_code == 201, created.text
        user_id = uuid.UUID(created.json()["id"])
        await eventually(lambda: _async(bool(mails_to(stack, [email], "Welcome"))), what="the welcome mail")

        registration = _server_span(spans, "POST /users")
        assert registration.context is not None
        registration_trace = registration.context.trace_id
        await eventually(
            lambda: _async(any(s.name == "smtp send" for s in _of_trace(spans, registration_trace))),
            what="the send's span",
        )
        trace = _of_trace(spans, registration_trace)
        assert any(span.attributes and span.attributes.get("db.system") == "postgresql" for span in trace)
        welcome = _consumers(trace, "notifications.events")
        assert [(span.attributes or {}).get("fastmicro.attempt") for span in welcome] == [0, 1]
        first = welcome[0]
        assert [(event.name, dict(event.attributes or {})["fastmicro.attempt"]) for event in first.events] == [
            ("retry", 1)
        ]
        # Both attempts continue the context the users transaction stored with its outbox row.
        assert {span.parent.span_id for span in welcome if span.parent} == {registration.context.span_id}
        [send] = [span for span in trace if span.name == "smtp send"]
        assert send.parent is not None
        assert send.parent.span_id == _span_id(welcome[1])
        relay = [s for s in spans.get_finished_spans() if s.name == "outbox publish"]
        assert any(link.context.trace_id == registration.context.trace_id for s in relay for link in s.links)

        placed = await orders.post("/orders", json={"items": ONE_ITEM}, headers=stack.bearer(user_id))
        assert placed.status_code == 201, placed.text
        deleted = await users.delete(f"/users/{user_id}", headers=stack.bearer(user_id))
        assert deleted.status_code == 204, deleted.text

        deletion = _server_span(spans, "DELETE /users/{user_id}")
        assert deletion.context is not None
        deletion_trace = deletion.context.trace_id

        def cancellation_seen() -> bool:
            at_notifications = _consumers(_of_trace(spans, deletion_trace), "notifications.events")
            return any(_routing_key(span) == "orders.OrderCancelled" for span in at_notifications)

        await eventually(lambda: _async(cancellation_seen()), what="the cancellation at notifications")
        trace = _of_trace(spans, deletion_trace)
        [at_orders] = _consumers(trace, "orders.events")
        assert at_orders.parent is not None
        assert at_orders.parent.span_id == deletion.context.span_id
        at_notifications = _consumers(trace, "notifications.events")
        # UserDeleted reaches notifications straight from users; OrderCancelled through orders.
        assert {_routing_key(span) for span in at_notifications} == {"users.UserDeleted", "orders.OrderCancelled"}
        # OrderCancelled was emitted inside the orders consumer span: its consumer is that span's child.
        [cancelled] = [span for span in at_notifications if _routing_key(span) == "orders.OrderCancelled"]
        assert cancelled.parent is not None
        assert cancelled.parent.span_id == _span_id(at_orders)


async def _async(value: bool) -> bool:
    return value


def _routing_key(span: ReadableSpan) -> object:
    return (span.attributes or {}).get("messaging.rabbitmq.destination.routing_key")


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)
