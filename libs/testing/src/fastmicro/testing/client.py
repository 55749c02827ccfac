"""Drive a service app in-process: its lifespan runs (relay, consumers), requests go through ASGI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def app_client(
    app: FastAPI, base_url: str = "http://testserver", *, client_address: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    """`app` running (lifespan and all), and a client whose requests come from `client_address`."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            # Unexpected errors are answered as 500 problems, as in production, instead of raised.
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(client_address, 49152)),
            base_url=base_url,
        ) as client,
    ):
        yield client
