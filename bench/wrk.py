"""wrk: found (or how to get it), run with the bench's Lua report, its figures and its own CPU time."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"
INSTALL_HINT = "wrk is not installed: `apt-get install wrk` (Debian, Ubuntu) or `brew install wrk` (macOS)"


class WrkMissing(RuntimeError):
    pass


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(INSTALL_HINT)
    return path


@dataclass(frozen=True)
class WrkRun:
    requests: int
    errors: int  # connect, read, write and timeout errors, and non-2xx/3xx answers
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # wrk's own utime + stime

    @property
    def ok_per_second(self) -> float:
        return (self.requests - self.errors) / self.seconds


@dataclass(frozen=True)
class Load:
    url: str
    threads: int
    connections: int
    seconds: int
    headers: tuple[str, ...] = ()
    script: Path | None = None  # a request script of its own, to go before the report
    script_args: tuple[str, ...] = ()


def script_for(load: Load, work_dir: Path) -> Path:
    """The request script (if any) with the report appended: wrk takes one script."""
    parts = [load.script.read_text()] if load.script else []
    parts.append((LUA / "report.lua").read_text())
    name = f"wrk-{load.script.stem if load.script else 'get'}.lua"
    path = work_dir / name
    path.write_text("\n".join(parts))
    return path


async def run_wrk(load: Load, work_dir: Path, log: Path) -> WrkRun:
    script = script_for(load, work_dir)
    argv = [
        wrk_path(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        *(arg for header in load.headers for arg in ("-H", header)),
        load.url,
        *(["--", *load.script_args] if load.script_args else []),
    ]
    output, cpu_seconds = await asyncio.to_thread(_run, argv)
    with log.open("a") as record:
        record.write(f"--- {' '.join(argv)}\n{output}\n")
    for line in output.splitlines():
        if line.startswith("BENCH_WRK "):
            report = json.loads(line.removeprefix("BENCH_WRK "))
            break
    else:
        raise RuntimeError(f"wrk printed no report:\n{output}")
    errors = report["errors"]
    return WrkRun(
        requests=report["requests"],
        errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"] + errors["status"],
        seconds=report["duration_us"] / 1e6,
        p50_ms=report["latency_us"]["p50"] / 1000,
        p99_ms=report["latency_us"]["p99"] / 1000,
        cpu_seconds=cpu_seconds,
    )


def _run(argv: list[str]) -> tuple[str, float]:
    """Run wrk to the end; its output, and its CPU seconds as the kernel accounted them at exit."""
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None  # noqa: S101 - stdout=PIPE
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}) after {time.monotonic() - started:.1f} s:\n{output}")
    return output, usage.ru_utime + usage.ru_stime
