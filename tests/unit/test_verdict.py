"""The bound rules every provider's verdict goes through (activities/providers/_verdict.py)."""

from __future__ import annotations

import pytest

from sluice.activities.providers._verdict import Wording, ratio_verdict, side_of, value_verdict
from sluice.contracts.status import Verdict

FIVE_XX = Wording("{part} of {whole} responses were 5xx", "responses", "were 5xx")
GETS = Wording("{part} of {whole} GETs succeeded", "GETs", "succeeded")


@pytest.mark.parametrize(
    "value, low, high, side",
    [
        (0.5, None, 0.4, "above"),
        (0.4, None, 0.4, "within"),  # the bound itself passes
        (0.1, 0.2, None, "below"),
        (0.2, 0.2, 0.4, "within"),
        (0.3, None, None, "within"),
    ],
)
def test_side_of(value: float, low: float | None, high: float | None, side: str) -> None:
    assert side_of(value, low, high) == side


def test_too_few_requests_is_inconclusive_never_a_pass() -> None:
    v = ratio_verdict("m", 0, 19, FIVE_XX, high=0.05, min_requests=20, counts={"requests": 19})
    assert v.verdict is Verdict.INCONCLUSIVE
    assert v.detail == "only 19 responses so far, 20 needed (0 were 5xx)"
    assert v.value is None and v.bound == "<= 0.05" and v.counts == {"requests": 19}


def test_zero_requests_is_inconclusive_even_without_a_minimum() -> None:
    assert ratio_verdict("m", 0, 0, FIVE_XX, high=0.05, min_requests=0).verdict is Verdict.INCONCLUSIVE


def test_ratio_above_max_fails_and_at_max_passes() -> None:
    bad = ratio_verdict("m", 6, 100, FIVE_XX, high=0.05, min_requests=20)
    assert bad.verdict is Verdict.FAIL and bad.value == pytest.approx(0.06)
    assert bad.detail == "6 of 100 responses were 5xx (6%), above the 5% limit"
    ok = ratio_verdict("m", 5, 100, FIVE_XX, high=0.05, min_requests=20, note=" (reset)")
    assert ok.verdict is Verdict.PASS
    assert ok.detail == "5 of 100 responses were 5xx (5%), within the 5% limit (reset)"


def test_ratio_below_min_fails() -> None:
    bad = ratio_verdict("m", 9, 10, GETS, low=0.95)
    assert bad.verdict is Verdict.FAIL and bad.bound == ">= 0.95"
    assert bad.detail == "9 of 10 GETs succeeded (90%), below the 95% minimum"
    ok = ratio_verdict("m", 10, 10, GETS, low=0.95)
    assert ok.verdict is Verdict.PASS and ok.detail.endswith("meets the 95% minimum")


def test_large_and_fractional_counts_read_as_counts() -> None:
    errors = Wording("{part} errors in {whole} requests", "requests", "errors")
    v = ratio_verdict("m", 12.5, 123456.0, errors, high=0.5)
    assert v.detail.startswith("12.5 errors in 123456 requests (0.01%)")


def test_value_verdict() -> None:
    above = value_verdict("m", 0.2, low=None, high=0.05)
    assert above.verdict is Verdict.FAIL and above.detail == "0.2 is above the maximum 0.05"
    below = value_verdict("m", 2.0, low=3, high=None)
    assert below.verdict is Verdict.FAIL and below.detail == "2 is below the minimum 3"
    within = value_verdict("m", 0.25, low=0.1, high=0.5)
    assert within.verdict is Verdict.PASS and within.detail == "0.25 is within >= 0.1 and <= 0.5"
    assert within.counts == {"value": 0.25} and within.value == 0.25
