"""One measurement (a `Sample`), CPU time of the processes under test, and medians and spread of rounds."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.processes import Process

CPUS = os.cpu_count() or 1


@dataclass(frozen=True)
class Sample:
    """What one run of one side of a path gave."""

    rate: float  # operations per second
    ops: int
    seconds: float
    cpu_ms_per_op: float | None  # CPU of the processes under test (utime + stime), per operation
    loadgen_cpu_share: float | None  # the load generator's CPU time / (wall time x CPUs)
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {key: _round(value) for key, value in asdict(self).items()}


class CpuMeter:
    """CPU seconds the processes under test spend between `start()` and `stop()`."""

    def __init__(self, processes: Sequence[Process]) -> None:
        self._processes = list(processes)
        self._cpu = 0.0
        self._wall = 0.0

    def start(self) -> CpuMeter:
        self._cpu = self._now()
        self._wall = time.monotonic()
        return self

    def stop(self) -> tuple[float, float]:
        """(CPU seconds, wall seconds) since `start()`."""
        return self._now() - self._cpu, time.monotonic() - self._wall

    def _now(self) -> float:
        return sum(process.cpu_seconds() for process in self._processes)


def own_cpu_seconds() -> float:
    """The bench process's own CPU time (it is the load generator of the end-to-end runs)."""
    times = os.times()
    return times.user + times.system


def machine_share(cpu_seconds: float, wall_seconds: float) -> float:
    return cpu_seconds / (wall_seconds * CPUS) if wall_seconds > 0 else 0.0


def per_op_ms(cpu_seconds: float, ops: int) -> float | None:
    return cpu_seconds * 1000 / ops if ops else None


def median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def spread(values: Sequence[float | None]) -> list[float] | None:
    present = [value for value in values if value is not None]
    return [_round(min(present)), _round(max(present))] if present else None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (`fraction` in 0..1) of `values`; inf counts as larger than anything."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if abs(value) < 1000 else round(value, 1)
    return value
