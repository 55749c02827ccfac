"""A service command (`python -m <svc> worker`) as a real subprocess a test can SIGKILL or SIGTERM.

Its JSON log lines are collected as dicts, so a test can wait for an event (`consumer_started`)
and count what one process did (`event_handled`) without any hook inside the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any


class ServiceProcess:
    """`python -m <service> <command>` with `env` on top of the test's environment, logging JSON."""

    def __init__(self, service: str, command: str = "worker", *, env: Mapping[str, str], name: str = "") -> None:
        self.service = service
        self.command = command
        self.name = name or f"{service}-{command}"
        self._env = {**os.environ, **env, "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        #: Every JSON log line so far, parsed; other lines (tracebacks) are kept as {"event": "<raw>", "raw": line}.
        self.logs: list[dict[str, Any]] = []

    async def start(self, *, ready: str = "worker_started", within: float = 30.0) -> ServiceProcess:
        """Start the process and wait until it logs `ready`."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.service,
            self.command,
            env=self._env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read(), name=f"{self.name}-logs")
        await self.wait_for(ready, within=within)
        return self

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def count(self, event: str, **fields: Any) -> int:
        return len(self.matching(event, **fields))

    def matching(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in self.logs
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(self, event: str, *, count: int = 1, within: float = 30.0, **fields: Any) -> None:
        """Wait until `event` (with `fields`) was logged `count` times; fail early if the process exits."""
        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(
                    lambda: self.count(event, **fields) >= count or self.returncode is not None
                )
        except TimeoutError:
            raise AssertionError(f"{self.name} did not log {event!r} x{count} in {within}s:\n{self.tail()}") from None
        if self.count(event, **fields) < count:
            raise AssertionError(f"{self.name} exited ({self.returncode}) before logging {event!r}:\n{self.tail()}")

    async def kill(self) -> int:
        """SIGKILL: no cleanup runs, as when a node dies or the OOM killer strikes."""
        return await self._signal(signal.SIGKILL, within=10.0)

    async def terminate(self, within: float = 30.0) -> int:
        """SIGTERM, as an orchestrator stops a pod, then wait for the process to exit by itself."""
        return await self._signal(signal.SIGTERM, within=within)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(json.dumps(line) for line in self.logs[-lines:])

    async def _signal(self, signum: int, *, within: float) -> int:
        process = self._running()
        if process.returncode is None:
            process.send_signal(signum)
        try:
            await asyncio.wait_for(process.wait(), within)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"{self.name} did not exit within {within}s of signal {signum}") from None
        if self._reader is not None:
            await self._reader
        return process.returncode if process.returncode is not None else -1

    def _running(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._process

    async def _read(self) -> None:
        stream = self._running().stdout
        assert stream is not None  # noqa: S101 - set by create_subprocess_exec(stdout=PIPE)
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            async with self._changed:
                self.logs.append(parsed if isinstance(parsed, dict) else {"event": "<raw>", "raw": text})
                self._changed.notify_all()
        await self._running().wait()
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        """Kill the process if it still runs (fixture teardown)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        if self._reader is not None:
            await self._reader
