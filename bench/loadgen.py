"""The open-loop load of the end-to-end runs: POST /orders at a fixed rate, whatever the answers take.

Request i is due at start + i / rate and its latency counts from then, so a slow server cannot
slow the load down (no coordinated omission). A small HTTP/1.1 keep-alive client over asyncio
streams keeps the generator's own CPU low; a new connection is opened whenever none is idle.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

import orjson

REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 1000
#: Idle connections older than this are closed, not reused: uvicorn closes them after 5 s.
IDLE_REUSE = 4.0


@dataclass(frozen=True)
class Outcome:
    due: float  # seconds after the start of the load
    latency: float  # seconds, from when the request was due to the end of its answer
    status: int  # 0: no answer (connection error or timeout)
    order_id: str | None
    placed_at: float | None  # the order's created_at (wall clock), as the service answered it
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HttpClient:
    """HTTP/1.1 with keep-alive to one host: enough for POST /orders and its JSON answer.

    A connection idle for longer than the server keeps it (uvicorn: 5 s) is not reused, and a
    reused connection that the server closed before answering is replaced once: the generator's
    own connection handling never shows as the server's error.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._open = asyncio.Semaphore(MAX_CONNECTIONS)
        self._all: set[asyncio.StreamWriter] = set()

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        async with self._open:
            reused = self._reusable()
            if reused is not None:
                try:
                    return await self._exchange(*reused, head + body)
                except asyncio.IncompleteReadError as error:
                    if error.partial:
                        raise
                    # closed by the server while idle, before reading the request: send it again on a new one
            return await self._exchange(*await self._connect(), head + body)

    def _reusable(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < IDLE_REUSE and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            self._discard(writer)
        return None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        self._all.add(writer)
        return reader, writer

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        try:
            writer.write(request)
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header[9:12])
            length, keep = 0, True
            for line in header.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    keep = False
            answer = await reader.readexactly(length)
        except BaseException:
            self._discard(writer)
            raise
        if keep:
            self._idle.append((reader, writer, time.monotonic()))
        else:
            self._discard(writer)
        return status, answer

    def _discard(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        self._all.discard(writer)

    async def close(self) -> None:
        for writer in self._all:
            writer.close()
        self._all.clear()
        self._idle.clear()


def post_head(host: str, port: int, path: str, token: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def place_orders(
    host: str, port: int, tokens: list[str], body: bytes, *, rate: float, seconds: float
) -> list[Outcome]:
    """POST /orders `rate` times a second for `seconds`, each with the next token; every outcome, in order."""
    client = HttpClient(host, port)
    heads = [post_head(host, port, "/orders", token, len(body)) for token in tokens]
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time()

    async def one(number: int) -> Outcome:
        due = number / rate
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, answer = await client.request(heads[number % len(heads)], body)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            return Outcome(due, loop.time() - start - due, 0, None, None, f"{type(error).__name__}: {error}")
        latency = loop.time() - start - due
        if not 200 <= status < 300:
            return Outcome(due, latency, status, None, None, answer[:200].decode(errors="replace"))
        order = orjson.loads(answer)
        return Outcome(due, latency, status, order["id"], datetime.fromisoformat(order["created_at"]).timestamp())

    tasks = []
    try:
        for number in range(total):
            delay = start + number / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(number)))
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await client.close()
