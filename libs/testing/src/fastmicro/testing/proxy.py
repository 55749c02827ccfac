"""A TCP proxy a test can cut, slow down and restore, to fail PostgreSQL or RabbitMQ without touching the server."""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target.

    `cut()` drops live connections and resets new ones; `slow_down(seconds)` holds every chunk
    in either direction that long (a congested or distant server); `restore()` undoes both.
    The proxy keeps listening through a cut: a connection being accepted just as the cut lands is
    reset like any other (closing the listener instead would let it slip through, or leak it), and
    the port stays the proxy's for the restore. Clients see a reset where they would have seen a
    refusal: both are connection errors to them.

    `also`: more targets, as a load balancer in front of a cluster has (a Kubernetes Service):
    each new connection goes to the next target in turn that accepts it, so a node that is down is
    skipped, and its connections, which drop with it, reconnect to the others.
    """

    def __init__(self, target_host: str, target_port: int, *, also: tuple[tuple[str, int], ...] = ()) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.targets = ((target_host, target_port), *also)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._refusing = False
        self.connections_made = 0
        self.latency = 0.0

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if netloc[1] else host))

    @property
    def is_cut(self) -> bool:
        return self._refusing

    async def cut(self) -> None:
        """Reset every live connection, and every new one until `restore()`."""
        self._refusing = True
        for link in list(self._links):
            link.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)

    def slow_down(self, latency: float) -> None:
        """Delay every chunk forwarded, on live and new connections, by `latency` seconds."""
        self.latency = latency

    async def restore(self) -> None:
        self.latency = 0.0
        self._refusing = False

    async def close(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._refusing:  # checked and registered below with no await between: a cut cannot miss it
            _abort(client_writer)
            return
        task = cast("asyncio.Task[None]", asyncio.current_task())
        self._links.add(task)
        self.connections_made += 1
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await self._open_upstream()
            await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._links.discard(task)
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    _abort(writer)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the first target that accepts one, starting from the next in turn."""
        start = self.connections_made % len(self.targets)
        *others, last = self.targets[start:] + self.targets[:start]
        for host, port in others:
            with contextlib.suppress(OSError):
                return await asyncio.open_connection(host, port)
        return await asyncio.open_connection(*last)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
