"""What the fault scenarios share: consumer counters, dead letters, notification and mail counts."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import REGISTRY

from fastmicro.events import DomainEvent, Envelope
from fastmicro.testing import publish_event
from fastmicro_contracts.money import Money
from fastmicro_contracts.orders import OrderLine, OrderPlaced
from fastmicro_contracts.users import UserCreated
from fault_stack import FaultStack, eventually


def consumed(event_type: str, outcome: str) -> float:
    """`consumer_messages_total{event_type, outcome}` of this process (every in-process consumer adds to it)."""
    return REGISTRY.get_sample_value("consumer_messages_total", {"event_type": event_type, "outcome": outcome}) or 0.0


def new_user() -> UserCreated:
    user_id = uuid.uuid4()
    return UserCreated(user_id=user_id, email=f"fault-{user_id.hex[:12]}@example.com", name="Fault Tolerant")


def order_placed(user_id: uuid.UUID) -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid.uuid4(),
        user_id=user_id,
        items=(OrderLine(sku="FAULT-1", quantity=1, unit_price=1000),),
        total=Money(amount="10.00", currency="USD"),
    )


async def publish_all(stack: FaultStack, events: Sequence[DomainEvent]) -> list[Envelope]:
    """Publish `events` concurrently, as several producers would; their envelopes in the same order."""
    return list(await asyncio.gather(*(publish_event(stack.broker, event) for event in events)))


async def count_by_status(stack: FaultStack, kind: str) -> dict[str, int]:
    rows = await stack.rows(
        "notifications", "SELECT status, count(*) FROM notifications WHERE kind = :kind GROUP BY status", kind=kind
    )
    return {status: int(count) for status, count in rows}


async def sent(stack: FaultStack, kind: str) -> int:
    return (await count_by_status(stack, kind)).get("sent", 0)


async def per_event(stack: FaultStack, kind: str) -> dict[uuid.UUID, int]:
    """How many notifications of `kind` each causing event has."""
    rows = await stack.rows(
        "notifications", "SELECT event_id, count(*) FROM notifications WHERE kind = :kind GROUP BY event_id", kind=kind
    )
    return {event_id: int(count) for event_id, count in rows}


def mails_to(stack: FaultStack, addresses: Iterable[str], subject: str = "") -> list[EmailMessage]:
    """The mails the sink accepted for any of `addresses` whose subject contains `subject`, re-sends included.

    The sink is shared by the whole run: a scenario tells its mail apart by its own recipients.
    """
    wanted = set(addresses)
    return [
        m
        for m in stack.mail.messages
        if m["To"] and m["To"].addresses[0].addr_spec in wanted and subject in str(m["Subject"])
    ]


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    headers: dict[str, Any]
    body: bytes


async def dead_letters(stack: FaultStack, service: str, *, expected: int, within: float = 20.0) -> list[DeadLetter]:
    """Wait until `<ns><service>.events.dead` holds `expected` messages; read them, leaving them queued."""

    async def arrived() -> bool:
        return await stack.dead_letters(service) >= expected

    await eventually(arrived, within=within, what=f"{expected} dead letters in {service}")
    channel = await stack.broker.channel(publisher_confirms=False)
    try:
        queue = await channel.declare_queue(f"{stack.namespace}{service}.events.dead", passive=True)
        held: list[AbstractIncomingMessage] = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            held.append(message)
        return [DeadLetter(m.message_id, dict(m.headers), m.body) for m in held]
    finally:
        await channel.close()  # unacked: they go back to the queue


async def delete_queues(stack: FaultStack, names: Iterable[str]) -> None:
    """Delete queues a scenario's own settings declared beyond the stack's topology (the stack deletes its own)."""
    channel = await stack.broker.channel(publisher_confirms=False)
    try:
        for name in names:
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
    finally:
        await channel.close()


async def settled_sessions(stack: FaultStack, service: str) -> None:
    """Wait until the database has ended every session of `service`'s processes (after a kill and a cut).

    A session whose client is gone ends when its statement does, so this is bounded by the
    statement timeout. From then on nothing the dead process sent can still commit.
    """
    timeout = stack.settings(service).db_statement_timeout_ms / 1000

    async def gone() -> bool:
        left = await stack.scalar(
            service,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = :name",
            name=service,
        )
        return bool(left == 0)

    await eventually(gone, within=timeout + 5, what=f"every session of {service} ended")
