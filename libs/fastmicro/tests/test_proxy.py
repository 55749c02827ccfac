"""The fault proxy itself: it forwards, cuts (live and new connections), slows down and restores."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from fastmicro.testing import TcpProxy


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def proxy(echo_port: int) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy("127.0.0.1", echo_port).start()
    yield proxy
    await proxy.close()


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 5)


async def test_it_forwards_both_ways(proxy: TcpProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

    assert await round_trip(reader, writer, b"ping") == b"ping"
    writer.close()


async def test_a_cut_resets_live_connections_and_new_ones_until_restored(proxy: TcpProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    await round_trip(reader, writer, b"before")

    await proxy.cut()

    assert await asyncio.wait_for(reader.read(), 5) == b""  # the live connection is gone
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)  # accepted, then reset at once
    with contextlib.suppress(ConnectionResetError):
        writer.write(b"during")
        assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert proxy.connections_made == 1  # nothing reached the target during the cut
    await proxy.restore()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    assert await round_trip(reader, writer, b"after") == b"after"
    writer.close()


async def test_slowing_down_holds_every_chunk_until_restored(proxy: TcpProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

    proxy.slow_down(0.3)
    started = time.monotonic()
    assert await round_trip(reader, writer, b"slow") == b"slow"
    slowed = time.monotonic() - started
    await proxy.restore()

    # A lower bound only: each direction sleeps at least the latency, whatever the machine's load.
    assert slowed >= 0.6
    assert await round_trip(reader, writer, b"fast") == b"fast"
    assert proxy.latency == 0
    writer.close()
