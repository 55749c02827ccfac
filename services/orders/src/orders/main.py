"""The orders service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from fastmicro.runtime import BackgroundRole, Runtime
from fastmicro.web import create_app as create_service_app
from orders.api import router
from orders.handlers import SUBSCRIPTIONS
from orders.settings import OrdersSettings
from orders.uow import OrdersUnitOfWork


def background_roles(runtime: Runtime) -> list[BackgroundRole]:
    """The outbox relay, the consumer of the events orders reacts to (UserDeleted), and retention of both tables."""
    return [
        runtime.outbox_relay(),
        runtime.consumer(SUBSCRIPTIONS, lambda: OrdersUnitOfWork(runtime.session_factory)),
        runtime.retention_purger(outbox=True, inbox=True),
    ]


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    return create_service_app(
        settings,
        title="fastmicro orders",
        description="Places and cancels orders. Publishes OrderPlaced and OrderCancelled; consumes UserDeleted.",
        routers=[router],
        roles=background_roles,
        revocations=True,  # learns of deleted users from UserDeleted: their tokens get 401
    )
