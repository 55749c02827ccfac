"""What the bench tells the terminal while it runs: one line per step, prefixed by the path."""

from __future__ import annotations

import sys
import time

_STARTED = time.monotonic()


def say(path: str, text: str) -> None:
    sys.stdout.write(f"[{time.monotonic() - _STARTED:6.1f}s] {path:<14} {text}\n")
    sys.stdout.flush()


def write(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
