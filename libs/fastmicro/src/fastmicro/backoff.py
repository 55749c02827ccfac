"""Backoff for the background loops (relay, consumer, retention, sender, LISTEN): jittered and capped."""

from __future__ import annotations

import random

import structlog

log = structlog.get_logger(__name__)


def backoff_delay(attempt: int, *, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter: replicas that failed together do not retry together."""
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - jitter, not security


class Backoff:
    """The consecutive failures of a background loop, and the pause after each: logged, jittered, capped."""

    def __init__(self, event: str, *, cap: float, logger: structlog.typing.FilteringBoundLogger | None = None) -> None:
        self._event = event
        self._cap = cap
        self._log = logger or log
        self.failures = 0

    def failed(self, error: BaseException, **fields: object) -> float:
        """Count the failure, log it as `event` (with `fields`), and return how many seconds to pause."""
        delay = backoff_delay(self.failures, cap=self._cap)
        self.failures += 1
        self._log.warning(
            self._event,
            **fields,
            error=str(error),
            error_type=type(error).__name__,
            retry_in=round(delay, 2),
            failures=self.failures,
        )
        return delay

    def succeeded(self) -> None:
        self.failures = 0
