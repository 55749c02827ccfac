"""Backoff: the pause after each consecutive failure of a background loop (pure logic)."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from fastmicro.backoff import Backoff


def test_pauses_grow_with_consecutive_failures_up_to_the_cap_and_are_logged() -> None:
    with capture_logs() as logs:
        # A logger made here, not a module's cached one: it is the one capture_logs configured.
        backoff = Backoff("thing_failed", cap=1.0, logger=structlog.get_logger("test"))
        delays = [backoff.failed(RuntimeError("down")) for _ in range(12)]

    assert all(0 <= delay <= 1.0 for delay in delays)
    assert delays[0] <= 0.2  # the first pause is short: one lost packet costs little
    assert backoff.failures == 12
    assert [entry["failures"] for entry in logs] == list(range(1, 13))
    assert {(entry["event"], entry["error"], entry["error_type"]) for entry in logs} == {
        ("thing_failed", "down", "RuntimeError")
    }


def test_a_success_starts_the_count_again() -> None:
    backoff = Backoff("thing_failed", cap=10.0)
    for _ in range(8):
        backoff.failed(OSError("refused"))

    backoff.succeeded()

    assert backoff.failures == 0
    assert backoff.failed(OSError("refused")) <= 0.2
