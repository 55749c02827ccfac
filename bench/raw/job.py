"""How a raw background twin talks to the bench: JSON lines on stdout, and SIGCONT as the signal to start.

The bench starts the job, waits for `raw_ready`, pauses it (SIGSTOP), prepares the work (rows,
queued messages), reads its CPU time and resumes it (SIGCONT): the job starts on that signal,
exactly as a paused project worker resumes.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import orjson


def say(event: str, **fields: Any) -> None:
    sys.stdout.write(orjson.dumps({"event": event, "t": time.time(), **fields}).decode() + "\n")
    sys.stdout.flush()


def started_event() -> asyncio.Event:
    """Set when the process is resumed by SIGCONT (after the bench's SIGSTOP)."""
    started = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGCONT, started.set)
    return started


def stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
