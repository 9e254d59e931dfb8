"""How providers turn measurements into verdicts: the bound rules live here, once, with their wording.

Providers only measure; `value_verdict` and `ratio_verdict` decide. Too little data is
inconclusive, never a pass; a value above `max` or below `min` fails; anything else passes.
`compare: stable` verdicts (the sequential test) are decided in `_compare.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, NamedTuple

from sluice.contracts.status import Comparison, MetricVerdict, Verdict
from sluice.contracts.text import cap


def verdict(
    metric: str,
    result: Verdict,
    detail: str,
    *,
    value: float | None = None,
    bound: str = "",
    counts: dict[str, float] | None = None,
    comparison: Comparison | None = None,
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
        comparison=comparison,
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


def count(n: float) -> str:
    """A count for details: `12`, `12345` (never `1.234e+04`), or `2.5` for a fractional sum."""
    return f"{n:.0f}" if float(n).is_integer() else number(n)


Side = Literal["above", "below", "within"]


def side_of(value: float, low: float | None, high: float | None) -> Side:
    """Where `value` lies against its bounds (either may be unset): the one bound rule."""
    if high is not None and value > high:
        return "above"
    if low is not None and value < low:
        return "below"
    return "within"


def value_verdict(
    metric: str,
    value: float,
    *,
    low: float | None,
    high: float | None,
    counts: dict[str, float] | None = None,
) -> MetricVerdict:
    """PASS while `value` is within `low`/`high`, else FAIL: `0.2 is above the maximum 0.05`."""
    bound = bounds(low, high)
    side = side_of(value, low, high)
    if side == "above":
        assert high is not None
        how = f"above the maximum {number(high)}"
    elif side == "below":
        assert low is not None
        how = f"below the minimum {number(low)}"
    else:
        how = f"within {bound}"
    result = Verdict.PASS if side == "within" else Verdict.FAIL
    detail = f"{number(value)} is {how}"
    return verdict(metric, result, detail, value=value, bound=bound, counts=counts or {"value": value})


class Wording(NamedTuple):
    """How a ratio's two counts read in a detail."""

    summary: str
    """Both counts, as a template: `{part} of {whole} responses were 5xx`."""
    whole: str
    """What `whole` counts, after its number: `responses`."""
    part: str
    """What `part` counts, after its number: `were 5xx`."""


def ratio_verdict(
    metric: str,
    part: float,
    whole: float,
    what: Wording,
    *,
    low: float | None = None,
    high: float | None = None,
    min_requests: int = 1,
    window: str = "so far",
    counts: dict[str, float] | None = None,
    note: str = "",
) -> MetricVerdict:
    """The verdict on `part / whole` (5xx / responses, errors / requests, successes / GETs).

    Fewer than `min_requests` in `whole` (and never zero) is INCONCLUSIVE; otherwise the ratio
    is judged like any value: above `high` or below `low` FAILs, else PASS. `what` words the
    counts (`3 of 200 responses were 5xx (1.5%)`), `window` says over what time they were
    counted (`only 12 responses so far`), and `note` is appended to the detail.
    """
    bound = bounds(low, high)
    if whole <= 0 or whole < min_requests:
        return verdict(
            metric,
            Verdict.INCONCLUSIVE,
            f"only {count(whole)} {what.whole} {window}, {min_requests} needed "
            f"({count(part)} {what.part}){note}",
            bound=bound,
            counts=counts,
        )
    ratio = part / whole
    summary = f"{what.summary.format(part=count(part), whole=count(whole))} ({percent(ratio)})"
    side = side_of(ratio, low, high)
    if side == "above":
        assert high is not None
        how = f"above the {percent(high)} limit"
    elif side == "below":
        assert low is not None
        how = f"below the {percent(low)} minimum"
    elif low is not None and high is not None:
        how = f"within the {percent(low)} minimum and the {percent(high)} limit"
    elif low is not None:
        how = f"meets the {percent(low)} minimum"
    elif high is not None:
        how = f"within the {percent(high)} limit"
    else:
        how = "no bound set"
    result = Verdict.PASS if side == "within" else Verdict.FAIL
    return verdict(metric, result, f"{summary}, {how}{note}", value=ratio, bound=bound, counts=counts)
