"""Helpers shared by the process-level scenarios (3-6): workers, bursts, and what the services kept.

Workers are real `python -m <service> worker` subprocesses (`ServiceProcess`); what each one
did is read from its JSON log lines (`event_handled`, `event_duplicate_skipped`, with the
message id the consumer binds). What the stack kept is read from the databases and the mail sink.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from fastmicro.db import create_engine, create_session_factory
from fastmicro.events import Envelope
from fastmicro.security import Principal
from fastmicro.testing import ServiceProcess
from fastmicro.testing.plugin import ProcessFactory
from fault_stack import ONE_ITEM, FaultStack
from orders.schemas import OrderCreate
from orders.service import OrderService
from orders.uow import OrdersUnitOfWork
from scenarios import new_user, per_event, publish_all

#: The log event a worker's consumer writes once it is subscribed to its queue.
READY = "consumer_started"


async def start_worker(
    service_process: ProcessFactory, stack: FaultStack, service: str, name: str, **overrides: Any
) -> ServiceProcess:
    """`python -m <service> worker` on the stack (settings `overrides` on top), once it consumes."""
    return await service_process(service, env=stack.env(service, **overrides), name=name, ready=READY)


def handled(process: ServiceProcess, event_type: str) -> list[str]:
    """Message ids of the `event_type` events this worker ran a handler for (one line per run)."""
    return [line["message_id"] for line in process.matching("event_handled", event_type=event_type)]


def duplicates(process: ServiceProcess, event_type: str) -> list[str]:
    """Message ids of the `event_type` events this worker found in its inbox already (absorbed)."""
    return [line["message_id"] for line in process.matching("event_duplicate_skipped", event_type=event_type)]


def handled_after(process: ServiceProcess, marker: str, event_type: str) -> int:
    """How many `event_type` events the worker finished after it logged `marker` (e.g. worker_stopping)."""
    lines = process.logs
    start = next((n for n, line in enumerate(lines) if line.get("event") == marker), len(lines))
    return sum(
        1 for line in lines[start:] if line.get("event") == "event_handled" and line.get("event_type") == event_type
    )


async def publish_users(stack: FaultStack, count: int) -> list[Envelope]:
    """Publish `count` UserCreated for new users, as the users' relay would; returns their envelopes."""
    return await publish_all(stack, [new_user() for _ in range(count)])


def emails_of(envelopes: Iterable[Envelope]) -> set[str]:
    return {str(envelope.data["email"]) for envelope in envelopes}


async def place_orders(stack: FaultStack, user_ids: Sequence[uuid.UUID], count: int, *, concurrency: int = 10) -> int:
    """Place `count` orders spread over `user_ids` through the use case (no HTTP, no relay); returns how many."""
    settings = stack.settings("orders")
    engine = create_engine(settings)
    factory = create_session_factory(engine)
    gate = asyncio.Semaphore(concurrency)
    issued, lifetime = datetime.now(UTC), timedelta(hours=1)
    body = OrderCreate.model_validate({"items": ONE_ITEM})

    async def place(n: int) -> None:
        actor = Principal(
            user_id=user_ids[n % len(user_ids)],
            token_id=f"fault-{n}",
            issued_at=issued,
            expires_at=issued + lifetime,
        )
        async with gate:
            await OrderService(OrdersUnitOfWork(factory)).place(actor, body)

    try:
        await asyncio.gather(*(place(n) for n in range(count)))
    finally:
        await engine.dispose()
    return count


async def notifications_per_event(stack: FaultStack, kind: str) -> dict[str, int]:
    """Event id (as the logs write it) -> notifications of `kind` for it: 1 each when effects are exactly once."""
    return {str(event_id): count for event_id, count in (await per_event(stack, kind)).items()}


def message_id_counts(mails: Iterable[EmailMessage]) -> Counter[str]:
    """Message-ID -> copies received. A Message-ID is one notification: more than one copy is a re-send."""
    return Counter(str(m["Message-ID"]) for m in mails)


async def queue_depth(stack: FaultStack, service: str) -> int:
    """Messages ready in `<service>.events` (not counting those a consumer holds unacknowledged)."""
    channel = await stack.broker.channel(publisher_confirms=False)
    try:
        queue = await channel.declare_queue(f"{stack.namespace}{service}.events", passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await channel.close()
