"""The end-to-end latency plot, as a hand-written SVG: per second of the run, placed→sent p50 and p99, HTTP p99."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from bench.loadgen import Outcome
from bench.measure import percentile

WIDTH, HEIGHT = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 64, 50
SERIES = (("sent_p50", "#1f77b4", "placed→sent p50"), ("sent_p99", "#d62728", "placed→sent p99"),
          ("http_p99", "#2ca02c", "HTTP p99"))  # fmt: skip


@dataclass(frozen=True)
class Second:
    second: int
    sent_p50: float | None  # ms; inf when a mail of that second never came
    sent_p99: float | None
    http_p99: float | None


def per_second(outcomes: Sequence[Outcome], sent_latency: dict[str, float]) -> list[Second]:
    """Group the orders by the second they were due in; the percentiles of each second."""
    sent: dict[int, list[float]] = defaultdict(list)
    http: dict[int, list[float]] = defaultdict(list)
    for outcome in outcomes:
        second = int(outcome.due)
        http[second].append(outcome.latency * 1000)
        if outcome.order_id in sent_latency:
            sent[second].append(sent_latency[outcome.order_id] * 1000)
    return [
        Second(second, percentile(sent[second], 0.5), percentile(sent[second], 0.99), percentile(http[second], 0.99))
        for second in sorted(http)
    ]


def latency_svg(seconds: Sequence[Second], *, title: str) -> str:
    """A log-scale plot (ms) over the seconds of the run; a point that never came is drawn at the top."""
    values = [v for s in seconds for key, _, _ in SERIES if (v := getattr(s, key)) is not None and math.isfinite(v)]
    low = 10 ** math.floor(math.log10(max(min(values, default=1.0), 0.1)))
    high = 10 ** math.ceil(math.log10(max(max(values, default=10.0), low * 10)))
    span = max(len(seconds) - 1, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(second: int) -> float:
        return LEFT + plot_w * second / span

    def y(ms: float) -> float:
        ms = min(max(ms, low), high)
        return TOP + plot_h * (1 - math.log10(ms / low) / math.log10(high / low))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    decade = low
    while decade <= high:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(decade):.1f}" y2="{y(decade):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(decade) + 4:.1f}" text-anchor="end">{_duration(decade)}</text>')
        decade *= 10
    step = max(1, round(span / 10))
    out.extend(
        f'<text x="{x(second):.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{second}</text>'
        for second in range(0, span + 1, step)
    )
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">second of the run</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>')
    for target, text in ((50.0, "p50 target"), (250.0, "p99 target")):
        if low <= target <= high:
            out.append(
                f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(target):.1f}" y2="{y(target):.1f}" stroke="#999"'
                ' stroke-dasharray="5,4"/>'
            )
            out.append(
                f'<text x="{WIDTH - RIGHT - 4}" y="{y(target) - 4:.1f}" text-anchor="end" fill="#777">{text}</text>'
            )
    for key, colour, _ in SERIES:
        points = [(x(s.second), y(v)) for s in seconds if (v := getattr(s, key)) is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
    for number, (_, colour, label) in enumerate(SERIES):
        lx = LEFT + 10 + number * 170
        out.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{TOP - 16}" y2="{TOP - 16}" stroke="{colour}" stroke-width="3"/>'
        )
        out.append(f'<text x="{lx + 30}" y="{TOP - 12}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _duration(ms: float) -> str:
    return f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s"
