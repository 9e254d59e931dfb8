"""Exact per-series counter increases for `compare: stable` on Prometheus."""

from __future__ import annotations

from sluice.activities.providers.prometheus import Labels, counted_since


def series(**labels: str) -> Labels:
    return frozenset(labels.items())


A, B, C, D = (series(instance=f"10.0.0.{i}:8080", version="v2") for i in range(1, 5))


def test_counts_are_exact_differences_per_series() -> None:
    now = {A: 1250.0, B: 40.0, C: 3.0}
    then = {A: 1000.0, B: 100.0, D: 77.0}
    assert counted_since(now, then) == {
        A: 250.0,  # counted on from its value at the start
        B: 40.0,  # went down: restarted, counts from 0 again
        C: 3.0,  # appeared since: all of it
    }  # D has no sample since the start: it counted nothing


def test_nothing_now_is_nothing_counted() -> None:
    assert counted_since({}, {A: 5.0}) == {}
