"""Small helpers shared by the providers: building verdicts and printing numbers."""

from __future__ import annotations

from datetime import UTC, datetime

from sluice.contracts.status import MetricVerdict, Verdict
from sluice.contracts.text import cap


def verdict(
    metric: str,
    result: Verdict,
    detail: str,
    *,
    value: float | None = None,
    bound: str = "",
    counts: dict[str, float] | None = None,
) -> MetricVerdict:
    """A MetricVerdict stamped with the current time (activities may read the real clock)."""
    return MetricVerdict(
        metric=metric,
        verdict=result,
        value=value,
        bound=bound,
        detail=cap(detail),
        counts=counts or {},
        at=datetime.now(UTC),
    )


def percent(ratio: float) -> str:
    """`0.025` -> `2.5%`, `0.01` -> `1%`, `1/3` -> `33.33%`."""
    return f"{round(ratio * 100, 2):g}%"


def number(value: float) -> str:
    """A compact number for details: `0.2`, `1500`, `1.235e-05`."""
    return f"{value:.4g}"


def bounds(low: float | None, high: float | None) -> str:
    """`>= 0.1 and <= 0.5`, or just the side that is set: a metric's `bound` text."""
    parts = []
    if low is not None:
        parts.append(f">= {number(low)}")
    if high is not None:
        parts.append(f"<= {number(high)}")
    return " and ".join(parts)
