"""orders accepts what its producers send: their committed example of every version it reads.

That is every version it subscribes to, and every older one an upcaster brings up to it. Each
example (libs/contracts/schemas/) goes through the consumer's own code path (`EventDelivery`:
parsing, matching by type and version, the upcaster, the inbox and the handler in one transaction)
against the real database.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from fastmicro.asyncapi import message_name
from fastmicro.testing import EventDelivery, committed_example
from orders.handlers import SUBSCRIPTIONS
from orders.uow import OrdersUnitOfWork


async def test_every_readable_version_s_committed_example_is_handled(
    app: FastAPI,
    client: httpx.AsyncClient,  # the app runs: its runtime is built
) -> None:
    delivery = EventDelivery(SUBSCRIPTIONS, lambda: OrdersUnitOfWork(app.state.runtime.session_factory))
    for event in delivery.handling.readable:
        outcome = await delivery.deliver(committed_example(event))
        assert outcome.kind == "handled", (message_name(event), outcome.reason, repr(outcome.error))
