"""`make bench SMOKE=1`, as CI runs it: every path once, its results sane, the raw twins byte-identical.

The bench runs as a subprocess with databases, broker namespace, ports and output folder of
its own, so it never meets a `make bench` or a stack running beside it. Without wrk (or
without PostgreSQL and RabbitMQ) the tests are skipped, and fail under REQUIRE_INTEGRATION=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.results import NAMES
from bench.wrk import INSTALL_HINT
from fastmicro.testing.ports import free_port_base
from fastmicro.testing.servers import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL, answers

ROOT = Path(__file__).resolve().parents[2]
COMPARED = ("get_order", "get_me", "post_order", "relay", "consumer", "email_sender")
SMOKE_TIMEOUT = 240

pytestmark = pytest.mark.timeout(SMOKE_TIMEOUT + 60)


def unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_INTEGRATION") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


#: The ports the bench takes, from its --base-port: the services, the SMTP sink, the raw twins.
OFFSETS = (1, 2, 3, 25, 1001, 1002)


class Smoke:
    """One smoke run's output folder and what it printed."""

    def __init__(self, folder: Path, output: str) -> None:
        self.folder = folder
        self.output = output
        self.entries: dict[str, dict[str, Any]] = {
            entry["name"]: entry for entry in json.loads((folder / "results.json").read_text())
        }


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    if shutil.which("wrk") is None:
        unavailable(INSTALL_HINT)
    database_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    amqp_url = os.environ.get("TEST_AMQP_URL", DEFAULT_AMQP_URL)
    if not (answers(database_url, 5432) and answers(amqp_url, 5672)):
        unavailable(f"PostgreSQL ({database_url}) or RabbitMQ ({amqp_url}) does not answer")
    folder = tmp_path_factory.mktemp("bench")
    tag = uuid.uuid4().hex[:8]
    command = [
        sys.executable, "-m", "bench", "--smoke",
        "--postgres", database_url, "--amqp-url", amqp_url,
        "--db-prefix", f"bench_test_{tag}_", "--amqp-namespace", f"bench-test-{tag}.",
        "--base-port", str(free_port_base(OFFSETS)),
        "--results-dir", str(folder), "--work-dir", str(folder / "work"),
        "--drop-databases",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"the smoke bench failed ({completed.returncode}):\n{output}"
    return Smoke(folder, output)


def test_every_path_is_measured(smoke: Smoke) -> None:
    assert sorted(smoke.entries) == sorted(NAMES)
    for entry in smoke.entries.values():
        assert "error" not in entry, entry
        for key in ("name", "unit", "project", "raw", "ratio", "p50_ms", "p99_ms", "cpu_ms_per_op"):
            assert key in entry, (entry["name"], key)


def test_each_path_and_its_raw_twin_give_sane_figures(smoke: Smoke) -> None:
    for name in COMPARED:
        entry = smoke.entries[name]
        assert entry["project"] > 0, entry
        assert entry["raw"] > 0, entry
        assert entry["ratio"] == pytest.approx(entry["project"] / entry["raw"], rel=0.01), entry
        assert entry["cpu_ms_per_op"] >= 0, entry
        assert entry["raw_cpu_ms_per_op"] >= 0, entry
        assert entry["spread"]["project"][0] <= entry["project"] <= entry["spread"]["project"][1], entry
        assert 0 <= entry["loadgen_cpu_share"]["project"] <= 1, entry
    for name in ("get_order", "get_me", "post_order"):
        entry = smoke.entries[name]
        assert entry["errors"] == {"project": 0, "raw": 0}, entry
        assert 0 < entry["p50_ms"] <= entry["p99_ms"], entry


def test_the_raw_twins_answer_byte_identical_bodies(smoke: Smoke) -> None:
    for name in ("get_order", "get_me", "post_order"):
        assert smoke.entries[name]["raw_body_identical"] is True, smoke.output


def test_the_end_to_end_run_places_orders_and_sends_their_mails(smoke: Smoke) -> None:
    entry = smoke.entries["e2e_200"]
    assert entry["raw"] is None
    assert entry["ratio"] is None
    assert entry["errors"] == 0, entry
    assert entry["orders_placed"] > 0, entry
    assert entry["emails_missing"] == 0, entry
    assert 0 < entry["p50_ms"] <= entry["p99_ms"], entry
    assert entry["http_p99_ms"] > 0, entry
    assert entry["backlog_after_1s"] >= 0, entry
    for name in ("break_point_1w", "break_point_2w"):
        assert smoke.entries[name]["project"] >= 0
        assert smoke.entries[name]["steps"], smoke.entries[name]


def test_the_table_and_the_plot_are_written(smoke: Smoke) -> None:
    table = (smoke.folder / "results.md").read_text()
    for name in NAMES:
        assert f"| {name} |" in table
    assert table in smoke.output  # printed too
    assert (smoke.folder / "e2e_latency.svg").read_text().startswith("<svg")
