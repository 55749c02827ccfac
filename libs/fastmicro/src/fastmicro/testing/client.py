"""Drive a service app in-process: its lifespan runs (relay, consumers), requests go through ASGI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def app_client(app: FastAPI, base_url: str = "http://testserver") -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            # Unexpected errors are answered as 500 problems, as in production, instead of raised.
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url=base_url,
        ) as client,
    ):
        yield client
