"""The processes a run starts: each with its log file, its CPU time, pause/resume, and a certain stop.

Every process runs in a session of its own (so a terminal's Ctrl-C reaches the bench only, which
then stops them in order) and is told to die with the bench (PR_SET_PDEATHSIG), so none outlives
a run, even a killed one. CPU time is read from /proc (utime + stime) over the process and its
descendants: uvicorn's worker processes count with their supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls it


class ProcessFailed(RuntimeError):
    pass


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Process:
    """One child process, its output in `log` (appended), stopped for certain by `stop()`."""

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log = log
        self.cwd = cwd
        self._process: asyncio.subprocess.Process | None = None
        self._paused = False

    @classmethod
    def python(cls, name: str, *args: str, env: Mapping[str, str], log: Path, cwd: Path) -> Process:
        return cls(name, [sys.executable, *args], env=env, log=log, cwd=cwd)

    async def start(self) -> Process:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as output:
            output.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
            output.flush()
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ProcessFailed(f"{self.name} was not started")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def wait(self, *, within: float) -> int:
        """Wait for the process to exit by itself; its exit code."""
        process = self._process
        if process is None:
            raise ProcessFailed(f"{self.name} was not started")
        try:
            return await asyncio.wait_for(process.wait(), within)
        except TimeoutError:
            raise ProcessFailed(f"{self.name} did not finish in {within:.0f} s:\n{self.tail()}") from None

    def check_running(self) -> None:
        if self.returncode is not None:
            raise ProcessFailed(f"{self.name} exited with {self.returncode}; its log, {self.log}:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """utime + stime of the process and every descendant, in seconds."""
        return process_tree_cpu(self.pid)

    def pause(self) -> None:
        """SIGSTOP the whole process group: it uses no CPU and takes no work until `resume()`."""
        self.check_running()
        os.killpg(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._paused and self.returncode is None:
            os.killpg(self.pid, signal.SIGCONT)
        self._paused = False

    async def stop(self, grace: float = 25.0) -> None:
        """SIGTERM the group and wait for the process; SIGKILL what is left after `grace` seconds."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
            os.killpg(process.pid, signal.SIGCONT)  # a paused group handles the SIGTERM only once resumed
        self._paused = False
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        with contextlib.suppress(ProcessLookupError):  # workers the supervisor left behind
            os.killpg(process.pid, signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Processes:
    """Every process of a run; `stop_all()` stops them, newest first, whatever happened."""

    def __init__(self) -> None:
        self._running: list[Process] = []

    async def start(self, process: Process) -> Process:
        self._running.append(process)
        return await process.start()

    async def stop(self, *processes: Process) -> None:
        await asyncio.gather(*(process.stop() for process in processes))
        for process in processes:
            if process in self._running:
                self._running.remove(process)

    async def stop_all(self) -> None:
        await self.stop(*reversed(self._running))


def process_tree_cpu(pid: int) -> float:
    """utime + stime (seconds) of `pid` and its descendants, as /proc tells them now."""
    stats: dict[int, tuple[int, int]] = {}  # pid -> (ppid, ticks)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            parsed = _stat(int(entry.name))
            if parsed is not None:
                stats[int(entry.name)] = parsed
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, (ppid, _) in stats.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(stats[member][1] for member in tree if member in stats) / CLOCK_TICKS


def _stat(pid: int) -> tuple[int, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode(errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # after "pid (comm)": state, ppid, ..., utime (12th), stime (13th)
    return int(fields[1]), int(fields[11]) + int(fields[12])


async def poll_until(
    check: Callable[[], Awaitable[bool]],
    *,
    what: str,
    within: float,
    interval: float = 0.01,
    watch: Sequence[Process] = (),
) -> None:
    """Await `check()` every `interval` until true; fail after `within` seconds or when a watched process exits."""
    deadline = time.monotonic() + within
    while not await check():
        for process in watch:
            process.check_running()
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {within:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_http_ready(url: str, process: Process, *, within: float = 60.0) -> None:
    """Poll `url`/health/ready until it answers 200 with status ok."""
    async with httpx.AsyncClient(timeout=2) as client:

        async def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = await client.get(f"{url}/health/ready")
                return response.status_code == 200 and response.json().get("status") == "ok"
            return False

        await poll_until(
            ready, what=f"{process.name} at {url}/health/ready", within=within, interval=0.1, watch=[process]
        )


class LogWatch:
    """Reads a process's JSON log lines as they are appended, to wait for an event it logs."""

    def __init__(self, process: Process) -> None:
        self._process = process
        self._offset = process.log.stat().st_size if process.log.exists() else 0
        self._partial = b""
        self.lines: list[dict[str, Any]] = []

    def _read(self) -> None:
        with self._process.log.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        self._offset += len(chunk)
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        for raw in complete:
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw)
                if isinstance(parsed, dict):
                    self.lines.append(parsed)

    def seen(self, event: str) -> bool:
        """Whether `event` was logged since this watch began (reads what was appended meanwhile)."""
        self._read()
        return any(line.get("event") == event for line in self.lines)

    async def wait_for(self, event: str, *, within: float = 60.0) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def logged() -> bool:
            self._read()
            found.extend(line for line in self.lines if line.get("event") == event)
            return bool(found)

        await poll_until(
            logged,
            what=f"{self._process.name} to log {event!r}",
            within=within,
            interval=0.005,
            watch=[self._process],
        )
        return found[0]
