"""results.json (one entry per path), and results.md: the table with issue 9's targets, pass or fail."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import Sample, median, spread

Entry = dict[str, Any]

#: Every entry results.json carries, in this order.
NAMES = ("get_order", "get_me", "post_order", "relay", "consumer", "email_sender", "e2e_200", "break_point_1w",
         "break_point_2w")  # fmt: skip


def compared(name: str, unit: str, project: Sequence[Sample], raw: Sequence[Sample], **extra: Any) -> Entry:
    """A path measured against its raw twin: medians of the rounds, their spread, every round."""
    project_rate, raw_rate = median([s.rate for s in project]), median([s.rate for s in raw])
    return {
        "name": name,
        "unit": unit,
        "project": _r(project_rate),
        "raw": _r(raw_rate),
        "ratio": round(project_rate / raw_rate, 3) if project_rate is not None and raw_rate else None,
        "p50_ms": _r(median([s.p50_ms for s in project])),
        "p99_ms": _r(median([s.p99_ms for s in project])),
        "cpu_ms_per_op": _r(median([s.cpu_ms_per_op for s in project])),
        "raw_p50_ms": _r(median([s.p50_ms for s in raw])),
        "raw_p99_ms": _r(median([s.p99_ms for s in raw])),
        "raw_cpu_ms_per_op": _r(median([s.cpu_ms_per_op for s in raw])),
        "spread": {"project": spread([s.rate for s in project]), "raw": spread([s.rate for s in raw])},
        "loadgen_cpu_share": {
            "project": _r(median([s.loadgen_cpu_share for s in project])),
            "raw": _r(median([s.loadgen_cpu_share for s in raw])),
        },
        "errors": {"project": sum(s.errors for s in project), "raw": sum(s.errors for s in raw)},
        "rounds": {"project": [s.as_dict() for s in project], "raw": [s.as_dict() for s in raw]},
        **extra,
    }


def failed(name: str, unit: str, error: BaseException) -> Entry:
    """The entry of a path that could not be measured: no figures, and why."""
    return {
        "name": name,
        "unit": unit,
        "project": None,
        "raw": None,
        "ratio": None,
        "p50_ms": None,
        "p99_ms": None,
        "cpu_ms_per_op": None,
        "error": f"{type(error).__name__}: {error}",
    }


def _r(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 3) if abs(value) < 1000 else round(value, 1)


@dataclass(frozen=True)
class Target:
    text: str
    check: Callable[[Entry], bool | None]  # None: nothing to judge


def _ratio_at_least(minimum: float) -> Callable[[Entry], bool | None]:
    return lambda e: None if e.get("ratio") is None else e["ratio"] >= minimum


def _read_target(e: Entry) -> bool | None:
    if e.get("ratio") is None or e.get("p99_ms") is None or not e.get("raw_p99_ms"):
        return None
    return bool(e["ratio"] >= 0.5 and e["p99_ms"] <= 3 * e["raw_p99_ms"])


def _e2e_target(e: Entry) -> bool | None:
    if e.get("p50_ms") is None:
        return None if "error" in e else False
    return bool(
        e["errors"] == 0
        and e["http_p99_ms"] is not None
        and e["http_p99_ms"] <= 100
        and e["p50_ms"] <= 50
        and e["p99_ms"] is not None
        and e["p99_ms"] <= 250
        and e["backlog_after_1s"] == 0
    )


TARGETS: dict[str, Target] = {
    "get_order": Target("≥ 50 % of raw rps, p99 ≤ 3x raw", _read_target),
    "get_me": Target("≥ 50 % of raw rps, p99 ≤ 3x raw", _read_target),
    "post_order": Target("≥ 50 % of raw rps", _ratio_at_least(0.5)),
    "relay": Target("≥ 80 % of raw confirmed publish", _ratio_at_least(0.8)),
    "consumer": Target("≥ 50 % of raw consume + insert", _ratio_at_least(0.5)),
    "email_sender": Target("≥ 50 % of raw aiosmtplib loop", _ratio_at_least(0.5)),
    "e2e_200": Target("0 errors, HTTP p99 ≤ 100 ms, placed→sent p50 ≤ 50 ms, p99 ≤ 250 ms, no backlog", _e2e_target),
    "break_point_1w": Target("reported (highest rate within the e2e latencies)", lambda e: None),
    "break_point_2w": Target("reported (highest rate within the e2e latencies)", lambda e: None),
}


def verdict(entry: Entry) -> str:
    if "error" in entry:
        return "ERROR"
    target = TARGETS.get(entry["name"])
    outcome = target.check(entry) if target else None
    return "—" if outcome is None else "pass" if outcome else "FAIL"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _latency(entry: Entry) -> str:
    project = f"{_fmt(entry.get('p50_ms'))} / {_fmt(entry.get('p99_ms'))}"
    if entry.get("raw_p50_ms") is not None:
        return f"{project} (raw {_fmt(entry['raw_p50_ms'])} / {_fmt(entry['raw_p99_ms'])})"
    return project


def _cpu(entry: Entry) -> str:
    project = _fmt(entry.get("cpu_ms_per_op"), 2)
    return f"{project} / {_fmt(entry['raw_cpu_ms_per_op'], 2)}" if "raw_cpu_ms_per_op" in entry else project


def _loadgen(entry: Entry) -> str:
    share = entry.get("loadgen_cpu_share")
    if isinstance(share, dict):
        return f"{_fmt(share.get('project'), 2)} / {_fmt(share.get('raw'), 2)}"
    return _fmt(share, 2)


def _spread(entry: Entry) -> str:
    spread_of = entry.get("spread")
    if not isinstance(spread_of, dict) or not spread_of.get("project"):
        return ""
    project, raw = spread_of["project"], spread_of.get("raw")
    text = f"project {_fmt(project[0], 0)}-{_fmt(project[1], 0)}"
    return f"{text}; raw {_fmt(raw[0], 0)}-{_fmt(raw[1], 0)}" if raw else text


def markdown(entries: Sequence[Entry], *, profile: str, started: str) -> str:
    lines = [
        f"# make bench — {profile} run, {started}",
        "",
        "| path | unit | project | raw | ratio | p50 / p99 ms | CPU ms/op project / raw | loadgen CPU share "
        "| spread (min-max) | target (issue 9) | result |",
        "|---|---|---:|---:|---:|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {entry['name']} | {entry['unit']} | {_fmt(entry.get('project'))} | {_fmt(entry.get('raw'))} "
        f"| {_fmt(entry.get('ratio'), 3)} | {_latency(entry)} | {_cpu(entry)} | {_loadgen(entry)} "
        f"| {_spread(entry)} | {TARGETS[entry['name']].text if entry['name'] in TARGETS else ''} "
        f"| {verdict(entry)} |"
        for entry in entries
    )
    lines += ["", *_notes(entries)]
    return "\n".join(lines) + "\n"


def _notes(entries: Sequence[Entry]) -> list[str]:
    notes = []
    for entry in entries:
        name = entry["name"]
        if "error" in entry:
            notes.append(f"- **{name}**: could not be measured: {entry['error']}")
        if "raw_body_identical" in entry:
            notes.append(f"- **{name}**: raw body byte-identical to the project's: {entry['raw_body_identical']}")
        if name == "e2e_200" and "errors" in entry:
            notes.append(
                f"- **e2e_200**: {_fmt(entry.get('offered_rate'))} orders/s offered for {_fmt(entry.get('seconds'))} s;"
                f" errors {entry['errors']}; HTTP p50 / p99 {_fmt(entry.get('http_p50_ms'))} /"
                f" {_fmt(entry.get('http_p99_ms'))} ms; placed→sent p50 / p99 {_fmt(entry.get('p50_ms'))} /"
                f" {_fmt(entry.get('p99_ms'))} ms; emails missing {entry.get('emails_missing')};"
                f" backlog 1 s after the load {entry.get('backlog_after_1s')} ({entry.get('backlog_detail')})"
            )
        if name.startswith("break_point") and entry.get("steps"):
            steps = ", ".join(
                f"{step['rate']}/s {'held' if step['passed'] else 'missed'}"
                f" (HTTP p99 {_fmt(step['http_p99_ms'])}, placed→sent p50 {_fmt(step['p50_ms'])}"
                f" p99 {_fmt(step['p99_ms'])} ms, errors {step['errors']})"
                for step in entry["steps"]
            )
            notes.append(f"- **{name}**: {steps}")
    notes.append(
        "- CPU ms/op: utime + stime of the server or worker processes under test (from /proc), per operation."
        " Loadgen CPU share: the load generator's CPU time over wall time x CPUs (wrk's, or the bench's own"
        " for the end-to-end runs)."
    )
    return notes


def _finite(value: Any) -> Any:
    """JSON has no inf or NaN: a figure that is not finite (a mail never received) is written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write(results_dir: Path, entries: Sequence[Entry], *, profile: str, started: str) -> str:
    ordered = sorted(entries, key=lambda e: NAMES.index(e["name"]) if e["name"] in NAMES else len(NAMES))
    (results_dir / "results.json").write_text(json.dumps(_finite(ordered), indent=2, allow_nan=False) + "\n")
    table = markdown(ordered, profile=profile, started=started)
    (results_dir / "results.md").write_text(table)
    return table
