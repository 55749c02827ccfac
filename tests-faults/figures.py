"""What each fault scenario counted, printed as one table at the end of the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    scenario: str
    sent: int
    delivered: int
    duplicates: int
    lost: int
    recovery_seconds: float | None = None
    note: str = ""

    def row(self) -> str:
        recovery = "—" if self.recovery_seconds is None else f"{self.recovery_seconds:.2f}"
        return (
            f"| {self.scenario} | {self.sent} | {self.delivered} | {self.duplicates} | {self.lost} "
            f"| {recovery} | {self.note} |"
        )


HEADER = (
    "| scenario | sent | delivered | duplicates absorbed | lost | seconds to recover | note |\n"
    "|---|---:|---:|---:|---:|---:|---|"
)


#: The `record` fixture: adds a scenario's figures to the table.
Record = Callable[[Figure], None]


def table(figures: list[Figure]) -> str:
    return "\n".join([HEADER, *(figure.row() for figure in sorted(figures, key=lambda f: f.scenario))])
