"""The processes of `make dev`, each restarted when a file it runs changes (reload on save).

A restart is a stop as on any other day: SIGTERM, then the process finishes or returns what it
holds (the API its requests, the worker its messages; cli.run_worker) and exits by itself; only
after `grace` seconds is it killed. So a reload loses nothing a SIGTERM would not.
The files are watched with watchfiles, the watcher uvicorn's own --reload uses: native events
(inotify, FSEvents), changes debounced into one batch, and a filter for Python sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from watchfiles import PythonFilter, awatch

#: How often the watcher reports that it is watching while nothing changes (ms): its first report
#: is the moment from which a change is seen.
_WATCHING_TICK_MS = 500


@dataclass
class Child:
    """One process of the stack: `argv` with `env`, its output given line by line to its supervisor's `output`."""

    name: str  #: as its lines are prefixed: users, users-w
    owner: str  #: the service whose files it runs
    argv: list[str]
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    restarting: bool = False  #: its exit now is the supervisor's doing
    exits: list[int] = field(default_factory=list)  #: the exit status of each process it stopped
    _pipe: asyncio.Task[None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if workers(self.argv) > 1:
            # One process to restart per role: several HTTP workers would each reload on their own.
            raise ValueError(f"{self.name}: reload on save runs one process, not `--workers {workers(self.argv)}`")


def workers(argv: Sequence[str]) -> int:
    """The `--workers N` of a `serve` command line (1 when absent)."""
    for index, word in enumerate(argv):
        if word == "--workers" and index + 1 < len(argv):
            return int(argv[index + 1])
        if word.startswith("--workers="):
            return int(word.partition("=")[2])
    return 1


class Supervisor:
    """Starts children, restarts the ones a change concerns, stops them all; says what it does."""

    def __init__(
        self,
        children: Iterable[Child],
        *,
        output: Callable[[str, str], None],
        grace: float = 25.0,
    ) -> None:
        self.children = list(children)
        self.output = output  #: (source, line)
        self.grace = grace
        self.changed = asyncio.Condition()  #: notified on every start, line of output and exit

    async def start(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=child.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C reaches them once, through the supervisor
        )
        child.starts += 1
        child.restarting = False
        child._pipe = asyncio.create_task(self._pipe(child, child.process), name=f"{child.name}-output")
        async with self.changed:
            self.changed.notify_all()

    async def start_all(self) -> None:
        for child in self.children:
            await self.start(child)

    async def stop(self, child: Child) -> int | None:
        """SIGTERM, and wait `grace` seconds for it to exit by itself; then SIGKILL."""
        process = child.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.grace)
            except TimeoutError:
                self.output("devstack", f"{child.name} did not stop within {self.grace:g} s of SIGTERM: killed")
                process.kill()
                await process.wait()
        if child._pipe is not None:
            await child._pipe
        if process.returncode is not None:
            child.exits.append(process.returncode)
        return process.returncode

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(child) for child in self.children))

    async def restart(self, child: Child, why: str) -> None:
        child.restarting = True
        self.output("devstack", f"restarting {child.name}: {why}")
        code = await self.stop(child)
        if code not in (0, -signal.SIGTERM, None):
            self.output("devstack", f"{child.name} exited {code} while stopping")
        await self.start(child)

    async def reload(self, changes: set[Path], root: Path) -> None:
        """Restart every child that runs a changed file, one service after another."""
        owners = concerned(changes, root, {child.owner for child in self.children})
        files = ", ".join(sorted(str(_relative(path, root)) for path in changes)[:3])
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        await asyncio.gather(
            *(self.restart(child, f"{files}{more} changed") for child in self.children if child.owner in owners)
        )

    async def _pipe(self, child: Child, process: asyncio.subprocess.Process) -> None:
        if process.stdout is not None:
            while line := await process.stdout.readline():
                self.output(child.name, line.decode(errors="replace").rstrip("\n"))
                async with self.changed:
                    self.changed.notify_all()
        await process.wait()
        async with self.changed:
            self.changed.notify_all()

    def exited(self) -> list[Child]:
        """The children that exited on their own (not stopped by a restart)."""
        return [
            child
            for child in self.children
            if child.process is not None and child.process.returncode is not None and not child.restarting
        ]


def concerned(changes: Iterable[Path], root: Path, owners: set[str]) -> set[str]:
    """The services whose processes run a changed file: services/<name>/... is that service's alone,
    anything else (the kernel, the contracts) is everyone's."""
    found: set[str] = set()
    for path in changes:
        parts = _relative(path, root).parts
        if len(parts) > 1 and parts[0] == "services":
            found.add(parts[1])
        else:
            return set(owners)
    return found & owners


def _relative(path: Path, root: Path) -> Path:
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(root.resolve())
    return path


def watched(root: Path) -> list[Path]:
    """What the stack's processes import from the workspace: each library's and each service's sources."""
    return sorted([*root.glob("libs/*/src"), *root.glob("services/*/src")])


async def watch(
    paths: Sequence[Path],
    on_change: Callable[[set[Path]], Awaitable[None]],
    *,
    stop: asyncio.Event,
    watching: asyncio.Event | None = None,
) -> None:
    """Call `on_change` with each debounced batch of changed Python files under `paths` until `stop` is set.

    `watching` is set once changes are being seen (the watcher's first report).
    """
    async for changes in awatch(
        *paths,
        watch_filter=PythonFilter(),
        stop_event=stop,
        yield_on_timeout=True,
        rust_timeout=_WATCHING_TICK_MS,
    ):
        if watching is not None:
            watching.set()
        if changes:
            await on_change({Path(path) for _change, path in changes})
