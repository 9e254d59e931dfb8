"""`compare: stable` verdicts: run one tick of the sequential test and explain it in one line."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from sluice.activities import sequential
from sluice.activities.providers._verdict import number, percent, verdict
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.status import Comparison, MetricVerdict, Verdict

Kind = Literal["errors", "latency"]


def previous_evidence(tick: AnalyzeInput, metric: str, kind: Kind) -> sequential.Evidence | None:
    """The test state the last verdict of `metric` carried, if any (a new rollout has none)."""
    for v in tick.previous:
        c = v.comparison
        if v.metric == metric and c is not None and c.kind == kind and c.log_lr:
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
            )
    return None


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
    """Advance the test with `totals` and turn the result into a verdict with its evidence.

    FAIL once the e-value has reached `1/alpha` (at any sample size: the test is valid at
    every look). Otherwise INCONCLUSIVE until both versions served `min_requests`, then PASS:
    no evidence that the new version is worse than stable by more than `tolerance`.
    """
    evidence = sequential.advance(
        previous_evidence(tick, metric, kind), totals, tolerance=tolerance, alpha=alpha
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
    comparison = Comparison(
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
    out = verdict(
        metric,
        result,
        detail + reset + note,
        value=e_value,
        bound=f"e < {number(threshold)}",
        counts=counts,
    )
    return out.model_copy(update={"comparison": comparison})


def _most_evidence(evidence: sequential.Evidence) -> int:
    """Index of the event kind (histogram bound) to explain: the one with the largest e-value,
    or, when none has any evidence, the bound stable exceeds closest to 5% of the time (its p95)."""
    per_kind = sequential.log_e_value(np.asarray(evidence.log_lr, dtype=np.float64))
    if float(np.max(per_kind) - np.min(per_kind)) > 1e-9:
        return int(np.argmax(per_kind))
    t = evidence.totals
    if not t.stable_requests:
        return 0
    share = [abs(e / t.stable_requests - 0.05) for e in t.stable_events]
    return share.index(min(share))
