"""Reload on save (tools/devreload.py): a saved file restarts the processes that run it, through SIGTERM.

The processes here are small Python programs that say when they start and when SIGTERM made them
stop; the tests wait on what the supervisor and the watcher report, never on a clock. That a real
worker restarted this way loses nothing is tests-faults/test_reload_restart.py.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from devreload import Child, Supervisor, concerned, watch, watched, workers

#: A process that says it started, and on SIGTERM says it stops and exits 0, as a service's does.
PROGRAM = """
import os, signal, sys
def stop(signum, frame):
    print("stopping", os.getpid(), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("started", os.getpid(), flush=True)
signal.pause()
"""


def child(name: str, owner: str) -> Child:
    return Child(name, owner, [sys.executable, "-c", PROGRAM], {"PYTHONUNBUFFERED": "1"})


def test_a_change_concerns_its_service_alone_and_a_library_change_everyone() -> None:
    root = Path("/repo")
    owners = {"users", "orders"}
    assert concerned({root / "services/orders/src/orders/api.py"}, root, owners) == {"orders"}
    assert concerned({root / "libs/fastmicro/src/fastmicro/uow.py"}, root, owners) == owners
    assert concerned({root / "services/billing/src/billing/api.py"}, root, owners) == set()


def test_the_workspace_sources_are_watched() -> None:
    root = Path(__file__).resolve().parents[2]
    paths = watched(root)
    assert root / "libs" / "fastmicro" / "src" in paths
    assert root / "services" / "orders" / "src" in paths


def test_reload_never_runs_several_workers() -> None:
    """Each HTTP worker would reload on its own: a reloaded process is one process."""
    assert workers(["python", "-m", "users", "serve"]) == 1
    with pytest.raises(ValueError, match="one process"):
        Child("users", "users", ["python", "-m", "users", "serve", "--workers", "2"], {})
    with pytest.raises(ValueError, match="one process"):
        Child("users", "users", ["python", "-m", "users", "serve", "--workers=3"], {})


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines: list[tuple[str, str]] = []
        self.supervisor = Supervisor(
            [child("alpha", "alpha"), child("alpha-w", "alpha"), child("beta", "beta")],
            output=lambda source, line: self.lines.append((source, line)),
            grace=30,
        )
        self.by_name = {c.name: c for c in self.supervisor.children}

    async def started(self, name: str, times: int) -> None:
        """Until `name` has printed `started` `times` times: its process runs, its new code loaded."""

        def done() -> bool:
            return sum(1 for source, line in self.lines if source == name and line.startswith("started")) >= times

        async with asyncio.timeout(60), self.supervisor.changed:
            await self.supervisor.changed.wait_for(done)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    for name in ("alpha", "beta"):
        package = tmp_path / "services" / name / "src" / name
        package.mkdir(parents=True)
        (package / "api.py").write_text("VERSION = 1\n")
    (tmp_path / "libs" / "kernel" / "src").mkdir(parents=True)
    running = Stack(tmp_path)
    yield running
    await running.supervisor.stop_all()


async def test_saving_a_file_restarts_the_processes_that_run_it_and_only_those(stack: Stack, tmp_path: Path) -> None:
    supervisor = stack.supervisor
    await supervisor.start_all()
    for name in stack.by_name:
        await stack.started(name, 1)
    stop, watching = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(
        watch(watched(tmp_path), lambda changes: supervisor.reload(changes, tmp_path), stop=stop, watching=watching)
    )
    try:
        async with asyncio.timeout(30):
            await watching.wait()
        (tmp_path / "services" / "alpha" / "src" / "alpha" / "api.py").write_text("VERSION = 2\n")
        await stack.started("alpha", 2)
        await stack.started("alpha-w", 2)

        assert stack.by_name["alpha"].exits == [0]  # stopped by SIGTERM, which it handled: a clean exit
        assert stack.by_name["alpha-w"].exits == [0]
        assert any(source == "alpha" and line.startswith("stopping") for source, line in stack.lines)  # SIGTERM
        assert stack.by_name["beta"].starts == 1
        assert stack.by_name["beta"].exits == []
        assert ("devstack", "restarting alpha: services/alpha/src/alpha/api.py changed") in stack.lines
        assert supervisor.exited() == []

        # The kernel is everyone's: every process restarts.
        (tmp_path / "libs" / "kernel" / "src" / "uow.py").write_text("X = 1\n")
        for name, times in (("alpha", 3), ("alpha-w", 3), ("beta", 2)):
            await stack.started(name, times)
    finally:
        stop.set()
        await watcher


async def test_a_process_that_exits_on_its_own_is_reported_and_not_restarted_by_itself(stack: Stack) -> None:
    crashing = Child("gamma", "gamma", [sys.executable, "-c", "raise SystemExit(3)"], {})
    stack.supervisor.children.append(crashing)
    await stack.supervisor.start(crashing)
    async with asyncio.timeout(60), stack.supervisor.changed:
        await stack.supervisor.changed.wait_for(lambda: crashing in stack.supervisor.exited())
    assert crashing.process is not None
    assert crashing.process.returncode == 3
    assert crashing.starts == 1
