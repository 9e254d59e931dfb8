"""`compare: stable` verdicts: run one tick of the sequential test and explain it in one line.

`compare_tick` is the one judgement of a tick's counts: the providers call it (through
`compare_verdict`, with the state the rollout carried) and so does `sluice backtest` (with
counts from a file), so both judge identically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from sluice.activities import sequential
from sluice.activities.providers._verdict import number, percent, verdict
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import MetricSpec
from sluice.contracts.status import Comparison, MetricVerdict, Verdict

Kind = Literal["errors", "latency"]


def previous_comparison(tick: AnalyzeInput, metric: str, kind: Kind) -> Comparison | None:
    """The test state the last verdict of `metric` carried, if any (a new rollout has none)."""
    for v in tick.previous:
        c = v.comparison
        if v.metric == metric and c is not None and c.kind == kind and c.log_lr:
            return c
    return None


def evidence_of(c: Comparison | None) -> sequential.Evidence | None:
    """The sequential test's state held in a verdict's comparison (None: start afresh)."""
    if c is None or not c.log_lr:
        return None
    return sequential.Evidence(
        totals=sequential.Totals(
            canary_requests=c.canary_requests,
            stable_requests=c.stable_requests,
            canary_events=tuple(c.canary_events),
            stable_events=tuple(c.stable_events),
        ),
        log_lr=tuple(tuple(row) for row in c.log_lr),
        log_e=math.log(max(c.e_value, 1e-300)),
        rejected=c.rejected,
        # States from before the baseline was carried: stable's totals are its baseline.
        baseline_requests=c.baseline_requests if c.baseline_events else c.stable_requests,
        baseline_events=tuple(c.baseline_events or c.stable_events),
        spread=tuple((a, b, c_, d) for a, b, c_, d in c.spread),
    )


def compared_count(metrics: Sequence[MetricSpec]) -> int:
    """How many of an analysis' metrics are `compare: stable`: the share each gets of alpha."""
    return max(1, sum(1 for m in metrics if getattr(m, "compare", None) is not None))


def compare_verdict(
    metric: str,
    kind: Kind,
    events: list[str],
    totals: sequential.Totals,
    tick: AnalyzeInput,
    *,
    alpha: float,
    tolerance: float,
    min_requests: int,
    note: str = "",
) -> MetricVerdict:
    """One tick of `metric` in a rollout: `compare_tick` continued from the state `tick` carries.

    `alpha` is the metric's; it is split equally over the analysis' `compare: stable` metrics
    (`tick.metrics`), so the false-rollback probability of the whole analysis stays under it.
    """
    spec = next((m for m in tick.metrics if m.name == metric), None)
    return compare_tick(
        metric,
        kind,
        events,
        totals,
        previous_comparison(tick, metric, kind),
        clustering=getattr(spec, "clustering", "independent") == "estimate",
        alpha=alpha / compared_count(tick.metrics),
        tolerance=tolerance,
        min_requests=min_requests,
        note=note,
    )


def compare_tick(
    metric: str,
    kind: Kind,
    events: list[str],
    totals: sequential.Totals,
    previous: Comparison | None,
    *,
    alpha: float,
    tolerance: float,
    min_requests: int,
    note: str = "",
    clustering: bool = False,
) -> MetricVerdict:
    """Advance the test from `previous` (the last verdict's comparison) with `totals`; the verdict.

    `totals` are the counts since the first weight > 0; the verdict's `comparison` is the
    state the next tick continues from.

    FAIL once the e-value has reached `1/alpha` (at any sample size: the test is valid at
    every look). Otherwise INCONCLUSIVE until both versions served `min_requests`, then PASS:
    no evidence that the new version is worse than stable by more than `tolerance`.
    """
    evidence = sequential.advance(
        evidence_of(previous), totals, tolerance=tolerance, alpha=alpha, clustering=clustering
    )
    threshold = 1.0 / alpha
    e_value = evidence.e_value
    j = _most_evidence(evidence)
    what = events[j]
    c_req, s_req = totals.canary_requests, totals.stable_requests
    c_ev, s_ev = totals.canary_events[j], totals.stable_events[j]
    c_rate = c_ev / c_req if c_req else 0.0
    s_rate = s_ev / s_req if s_req else 0.0
    rates = (
        f"{what}: new {percent(c_rate)} ({c_ev:g}/{c_req:g}) vs stable {percent(s_rate)} ({s_ev:g}/{s_req:g})"
    )
    stat = f"e={number(e_value)}, rejects at {number(threshold)}"
    reset = " (counters went backwards; counting since the reset)" if evidence.reset else ""
    if evidence.dispersion and evidence.dispersion[j] > 1.05:
        intervals = evidence.spread[j][0] if evidence.spread else 0
        reset += (
            f"; evidence divided by {evidence.dispersion[j]:.3g}, an upper bound on how clustered "
            f"stable's {what} are (from {intervals:g} intervals)"
        )
    if evidence.against_baseline:
        b_req, b_ev = evidence.baseline_requests, evidence.baseline_events[j]
        reset += (
            f"; stable served no requests this interval: compared with its rate recorded before "
            f"({percent(b_ev / b_req)}, {b_ev:g}/{b_req:g}), assuming stable would still have it"
        )
    if evidence.rejected:
        result = Verdict.FAIL
        detail = f"{rates}: worse than stable by more than {percent(tolerance)} ({stat})"
    elif c_req < min_requests or s_req < min_requests:
        result = Verdict.INCONCLUSIVE
        detail = (
            f"not enough traffic: {c_req:g} new / {s_req:g} stable requests, {min_requests} "
            f"each needed; {rates} ({stat})"
        )
    else:
        result = Verdict.PASS
        detail = f"{rates}: no evidence of a regression beyond {percent(tolerance)} ({stat})"
    # Built by this function from typed values: skip re-validating (it is on every tick's path).
    comparison = Comparison.model_construct(
        kind=kind,
        canary_requests=c_req,
        stable_requests=s_req,
        events=events,
        canary_events=list(totals.canary_events),
        stable_events=list(totals.stable_events),
        e_value=e_value,
        threshold=threshold,
        tolerance=tolerance,
        rejected=evidence.rejected,
        log_lr=[list(row) for row in evidence.log_lr],
        baseline_requests=evidence.baseline_requests,
        baseline_events=list(evidence.baseline_events),
        against_baseline=evidence.against_baseline,
        spread=[list(row) for row in evidence.spread],
        dispersion=list(evidence.dispersion),
    )
    counts: dict[str, float] = {
        "new_requests": c_req,
        "stable_requests": s_req,
        "new_events": c_ev,
        "stable_events": s_ev,
        "new_rate": c_rate,
        "stable_rate": s_rate,
        "e_value": e_value,
    }
    return verdict(
        metric,
        result,
        detail + reset + note,
        value=e_value,
        bound=f"e < {number(threshold)}",
        counts=counts,
        comparison=comparison,
    )


def _most_evidence(evidence: sequential.Evidence) -> int:
    """Index of the event kind (histogram bound) to explain: the one with the largest e-value,
    or, when none has any evidence, the bound stable exceeds closest to 5% of the time (its p95)."""
    per_kind = evidence.log_e_kinds or tuple(
        sequential.log_e_value(np.asarray(evidence.log_lr, dtype=np.float64)).tolist()
    )
    if max(per_kind) - min(per_kind) > 1e-9:
        return per_kind.index(max(per_kind))
    t = evidence.totals
    if not t.stable_requests:
        return 0
    share = [abs(e / t.stable_requests - 0.05) for e in t.stable_events]
    return share.index(min(share))


def latency_totals(
    canary: dict[float, float], stable: dict[float, float]
) -> tuple[list[str], sequential.Totals] | None:
    """Per finite bucket bound shared by both versions, requests slower than it (total - bucket).

    `canary` and `stable` are cumulative bucket counts by `le` (Prometheus `_bucket`
    semantics, `inf` for `+Inf`, which is the requests). None when they share no finite bound.
    """
    bounds = sorted(b for b in canary.keys() & stable.keys() if math.isfinite(b))
    if not bounds:
        return None
    c_total, s_total = canary[math.inf], stable[math.inf]
    return [f"slower than {b:g}s" for b in bounds], sequential.Totals(
        canary_requests=c_total,
        stable_requests=s_total,
        canary_events=tuple(max(0.0, c_total - canary[b]) for b in bounds),
        stable_events=tuple(max(0.0, s_total - stable[b]) for b in bounds),
    )
