"""Scenario: `make dev`'s reload on save restarts a consumer with messages in hand.

Promise: a worker restarted because a file it runs was saved stops as on SIGTERM (scenario 5):
it finishes what it holds, returns what it had not started, exits 0, and its successor handles
the rest; every event is handled once and none is lost.

The worker runs under tools/devreload.py's supervisor and watcher, as `make dev --reload` runs
it; the save is a write to a file of the watched tree. Its database is slowed by a proxy so
the burst is still being handled when the save lands.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from devreload import Child, Supervisor, watch

from fastmicro.testing.plugin import ProxyFactory
from fault_stack import FaultStack, eventually
from figures import Figure, Record
from workers import notifications_per_event, publish_users, queue_depth

EVENTS = 60
SAVE_AFTER = 15  # handled by the first worker before the save
PREFETCH = 10
LATENCY = 0.02


class Logged:
    """The JSON log lines of the supervised worker, by the number of the process that wrote them."""

    def __init__(self, child: Child) -> None:
        self.lines: list[tuple[int, dict[str, Any]]] = []
        self.child = child

    def output(self, source: str, text: str) -> None:
        if source != self.child.name:  # the supervisor's own lines
            return
        try:
            line = json.loads(text)
        except ValueError:
            line = {"event": "<raw>", "raw": text}
        if isinstance(line, dict):
            self.lines.append((self.child.starts, line))

    def handled(self, start: int) -> list[str]:
        return [
            line["message_id"]
            for number, line in self.lines
            if number == start and line.get("event") == "event_handled" and line.get("event_type") == "UserCreated"
        ]

    def duplicates(self) -> list[str]:
        return [line["message_id"] for _n, line in self.lines if line.get("event") == "event_duplicate_skipped"]

    def count(self, start: int, event: str) -> int:
        return sum(1 for number, line in self.lines if number == start and line.get("event") == event)

    async def wait_for(self, supervisor: Supervisor, check: Any, what: str, within: float = 60) -> None:
        try:
            async with asyncio.timeout(within), supervisor.changed:
                await supervisor.changed.wait_for(check)
        except TimeoutError:
            tail = "\n".join(json.dumps(line) for _n, line in self.lines[-30:])
            raise AssertionError(f"{what} did not happen within {within}s:\n{tail}") from None


async def test_a_worker_restarted_by_a_saved_file_finishes_what_it_holds_and_nothing_is_lost(
    stack: FaultStack, tcp_proxy: ProxyFactory, record: Record, tmp_path: Path
) -> None:
    """Save mid-burst: the first process exits 0 with its acked messages committed, the rest is handled once."""
    database = await tcp_proxy(stack.databases["notifications"])
    env = stack.env(
        "notifications",
        database_url=database.url_for(stack.databases["notifications"]),
        consumer_prefetch=PREFETCH,
        db_pool_timeout=30.0,
    )
    worker = Child(
        "notifications-w",
        "notifications",
        [sys.executable, "-m", "notifications", "worker"],
        {**os.environ, **env, "PYTHONUNBUFFERED": "1"},
    )
    logged = Logged(worker)
    supervisor = Supervisor([worker], output=logged.output, grace=30)
    source = tmp_path / "services" / "notifications" / "src" / "notifications" / "handlers.py"
    source.parent.mkdir(parents=True)
    source.write_text("VERSION = 1\n")
    stop, watching = asyncio.Event(), asyncio.Event()

    users = await publish_users(stack, EVENTS)
    ids = {str(user.id) for user in users}
    database.slow_down(LATENCY)
    await supervisor.start(worker)
    watcher = asyncio.create_task(
        watch(
            [tmp_path / "services"], lambda changes: supervisor.reload(changes, tmp_path), stop=stop, watching=watching
        )
    )
    try:
        await watching.wait()
        await logged.wait_for(supervisor, lambda: len(logged.handled(1)) >= SAVE_AFTER, "the first handlings")
        source.write_text("VERSION = 2\n")  # the save
        await logged.wait_for(supervisor, lambda: logged.count(2, "consumer_started") >= 1, "the restart")
        by_first = logged.handled(1)
        committed = set(await notifications_per_event(stack, "welcome"))  # what the first process left
        await database.restore()

        async def all_handled() -> bool:
            return len(await notifications_per_event(stack, "welcome")) == EVENTS

        recovery = await eventually(all_handled, within=60, what="every event handled")
    finally:
        stop.set()
        await watcher
        await supervisor.stop_all()

    by_second = logged.handled(2)
    per_event = await notifications_per_event(stack, "welcome")
    assert worker.exits[0] == 0  # stopped by the restart's SIGTERM, and exited by itself
    assert logged.count(1, "worker_stopping") == 1
    assert logged.count(1, "consumer_stopped") == 1
    assert SAVE_AFTER <= len(by_first) < EVENTS  # restarted with part of the burst still queued
    assert set(by_first) <= committed  # every message it acked has its effect
    assert not set(by_first) & set(by_second)  # nothing it handled came back
    assert logged.duplicates() == []  # not even as far as the inbox
    assert len(by_first) + len(by_second) == EVENTS
    assert set(per_event) == ids
    assert set(per_event.values()) == {1}
    assert await queue_depth(stack, "notifications") == 0
    assert await stack.dead_letters("notifications") == 0
    record(
        Figure(
            "reload on save restarts a consumer mid-burst",
            sent=EVENTS,
            delivered=len(per_event),
            duplicates=len(logged.duplicates()),
            lost=EVENTS - len(per_event),
            recovery_seconds=recovery,
            note=f"exit {worker.exits[0]}; first handled {len(by_first)}, second {len(by_second)}",
        )
    )
