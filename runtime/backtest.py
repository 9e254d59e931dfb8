"""`sluice backtest`: a spec's `compare: stable` analysis judged offline on recorded counters.

It runs the workflow's judgement, not a copy of it: each metric's counts go through
`compare_tick` (the function the providers call) with the test's state carried from tick to
tick as the rollout carries it, and each tick through `workflows.judge` (`judge` for the
decision, `may_end_bake` for the bake-end rule). What the file replaces is only the
measuring: counters come from the file instead of HAProxy, Prometheus or CloudWatch.

Input, JSON lines, one analysis tick each, runs contiguous and in time order:
`{"run": "a", "t": 5, "weight": 10, "metrics": {"errors-vs-stable": [{"version": "canary",
"instance": "pod-1", "requests": 120, "errors": 1}, ...]}}`. Counters are cumulative per
series (metric, version, instance), as Prometheus exposes them:
- a record at `t = 0` is the baseline reading the workflow takes at the first weight > 0: its
  values are where counting starts, and it is not judged (the workflow's first tick comes one
  interval later); its output line says `"baseline": true`;
- a series first seen later counts in full from its first record (it started since);
- a value below the same series' previous one means that series restarted: what it counted
  since the restart (its value) is added, other series are unaffected;
- a series missing from a record adds nothing; so does a metric missing from a record;
- `buckets` (latency metrics) are cumulative in `le` and in time; `"+Inf"` is required and
  `requests`, when given, equals it; every series of a metric has the same bounds.

Streaming: records are read, judged and yielded one at a time. Invalid input raises
`InvalidData` (line and field) when its line is reached, after the lines before it were judged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sluice.activities.providers._compare import Kind, compare_tick, compared_count, latency_totals
from sluice.activities.providers._verdict import verdict
from sluice.activities.sequential import Totals
from sluice.contracts.spec import (
    AnalysisSpec,
    CloudWatchMetric,
    HAProxyMetric,
    MetricSpec,
    PrometheusMetric,
)
from sluice.contracts.status import AnalysisCounters, Comparison, MetricVerdict, Verdict
from sluice.workflows.judge import Decision, judge, may_end_bake, tick_verdict

VERSIONS = ("canary", "stable")


class InvalidData(Exception):
    """A record the backtest cannot judge: which line, which field, what was expected."""

    def __init__(self, line: int, where: str, message: str) -> None:
        super().__init__(f"line {line}: {where}: {message}" if where else f"line {line}: {message}")
        self.line = line
        self.where = where
        self.message = message


@dataclass(frozen=True)
class ComparedMetric:
    """A `compare: stable` metric of the spec and what the provider would count for it."""

    name: str
    kind: Kind
    events: str
    """The event name the provider uses for errors (`5xx`, or `errors` for CloudWatch)."""
    alpha: float
    """The metric's share of its `alpha`: split over the analysis' compared metrics."""
    tolerance: float
    min_requests: int
    clustering: bool = False
    """`clustering: estimate`: evidence divided by the clustering stable's intervals show."""


def compared_metrics(analysis: AnalysisSpec) -> list[ComparedMetric]:
    """The analysis' `compare: stable` metrics, in the spec's order (the others are not judged)."""
    out = []
    share = compared_count(analysis.metrics)  # alpha is split over them, as the providers do
    for m in analysis.metrics:
        if isinstance(m, HAProxyMetric | PrometheusMetric | CloudWatchMetric) and m.compare is not None:
            latency = isinstance(m, PrometheusMetric) and m.compares_latency
            out.append(
                ComparedMetric(
                    name=m.name,
                    kind="latency" if latency else "errors",
                    events="errors" if isinstance(m, CloudWatchMetric) else "5xx",
                    alpha=m.alpha / share,
                    tolerance=m.tolerance,
                    min_requests=m.min_requests,
                    clustering=m.clustering == "estimate",
                )
            )
    return out


def not_judged(analysis: AnalysisSpec) -> list[MetricSpec]:
    """Metrics of the analysis a backtest cannot judge (not `compare: stable`): named in the output."""
    judged = {m.name for m in compared_metrics(analysis)}
    return [m for m in analysis.metrics if m.name not in judged]


@dataclass(frozen=True)
class TickResult:
    """One judged record: the tick's outcome, what the rollout would do, and each metric's verdict."""

    run: str
    t: float
    """As given in the file (echoed unchanged)."""
    weight: float
    tick: Verdict
    decision: Decision
    may_end_bake: bool
    verdicts: list[MetricVerdict]
    baseline: bool = False
    """The record at t = 0: where counting starts, not a tick of the workflow."""
    line: int = 0

    def as_json(self) -> dict[str, Any]:
        """The `--output json` line of this tick."""
        out: dict[str, Any] = {
            "run": self.run,
            "t": self.t,
            "weight": self.weight,
            "tick": self.tick.value,
            "decision": self.decision.action,
            "may_end_bake": self.may_end_bake,
            "metrics": {v.metric: _verdict_json(v) for v in self.verdicts},
        }
        if self.decision.reason:
            out["reason"] = self.decision.reason
        if self.baseline:
            out["baseline"] = True
        return out


def _verdict_json(v: MetricVerdict) -> dict[str, Any]:
    out: dict[str, Any] = {"verdict": v.verdict.value, "detail": v.detail}
    c = v.comparison
    if c is not None:
        out |= {"e_value": c.e_value, "threshold": c.threshold, "rejected": c.rejected}
    out["counts"] = v.counts
    return out


# --- counting: per-series cumulative counters to version totals since t = 0 ------------------


@dataclass
class _Counts:
    """One metric's counts in one run: each series' last values and each version's sum since t = 0.

    A series' values are `[requests, errors]` (errors) or `[requests, bucket(le_1), ...]` for
    the finite bounds in increasing order (latency).
    """

    last: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    counted: dict[str, list[float]] = field(default_factory=dict)
    restarted: list[str] = field(default_factory=list)

    def add(self, version: str, instance: str, values: list[float], baseline: bool) -> None:
        key = (version, instance)
        before = self.last.get(key)
        self.last[key] = values
        if before is None:
            if baseline:
                self.counted.setdefault(version, [0.0] * len(values))
                return
            inc = values  # appeared since t = 0: all of it counts
        else:
            inc = [v - b for v, b in zip(values, before, strict=True)]
            if min(inc) < 0:
                inc = values  # this series restarted: what it counted since then
                self.restarted.append(f"{version}{'/' + instance if instance else ''}")
        total = self.counted.get(version)
        self.counted[version] = inc if total is None else [a + b for a, b in zip(total, inc, strict=True)]


@dataclass
class _Run:
    """One run's state between ticks: what the workflow carries (counters, each test's last state)."""

    name: str
    counters: AnalysisCounters = field(default_factory=AnalysisCounters)
    previous: dict[str, Comparison] = field(default_factory=dict)
    counts: dict[str, _Counts] = field(default_factory=dict)
    bounds: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Per latency metric: its finite `le` bounds, fixed by the first series seen."""
    layouts: dict[str, tuple[tuple[str, ...], list[str]]] = field(default_factory=dict)
    """Per latency metric: the last series' bucket keys, and their order (`+Inf`, then increasing)."""
    last_t: float = 0.0
    ended: bool = False


def backtest(analysis: AnalysisSpec, lines: Iterable[str]) -> Iterator[TickResult]:
    """Judge each record of `lines` as the workflow judges a tick; yields one result per record.

    A run's results stop after its first `rollback` (the rollout is over); its later records
    are still checked. Raises `InvalidData` at the first record that cannot be judged.
    """
    metrics = compared_metrics(analysis)
    if not metrics:
        raise ValueError("the spec's analysis has no `compare: stable` metric; nothing to backtest")
    by_name = {m.name: m for m in metrics}
    run: _Run | None = None
    seen: set[str] = set()
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        record = _parse(number, text)
        name, t, weight, data = _fields(number, record, by_name)
        if run is None or run.name != name:
            if name in seen:
                raise InvalidData(
                    number, "run", f"run {name!r} appeared before: a run's records must be contiguous"
                )
            seen.add(name)
            run = _Run(name)
        if t < run.last_t:
            raise InvalidData(number, "t", f"{t:g} is before the previous record's {run.last_t:g}")
        run.last_t = t
        baseline = t == 0
        for m in metrics:
            _count(number, run, m, data.get(m.name, []), baseline)
        if run.ended:
            continue
        if baseline:
            yield _baseline(run, t, weight, metrics, number)
            continue
        verdicts = [_judge_metric(run, m) for m in metrics]
        run.counters, decision = judge(analysis, run.counters, verdicts)
        if decision.action == "rollback":
            run.ended = True
        yield TickResult(
            run=name,
            t=t,
            weight=weight,
            tick=tick_verdict(verdicts),
            decision=decision,
            may_end_bake=may_end_bake(verdicts),
            verdicts=verdicts,
            line=number,
        )


def _judge_metric(run: _Run, m: ComparedMetric) -> MetricVerdict:
    """One metric's verdict this tick: `compare_tick` on the run's totals, continuing its test."""
    counts = run.counts.get(m.name)
    restarted = counts.restarted if counts is not None else []
    note = f" (restarted: {', '.join(restarted)}; counting since each restart)" if restarted else ""
    totals: tuple[list[str], Totals] | None
    if m.kind == "errors":
        c = counts.counted.get("canary", [0.0, 0.0]) if counts else [0.0, 0.0]
        s = counts.counted.get("stable", [0.0, 0.0]) if counts else [0.0, 0.0]
        totals = ([m.events], Totals(c[0], s[0], (c[1],), (s[1],)))
    else:
        bounds = run.bounds.get(m.name)
        if bounds is None or counts is None:
            totals = None
        else:
            empty = [0.0] * (len(bounds) + 1)
            c = counts.counted.get("canary", empty)
            s = counts.counted.get("stable", empty)
            totals = latency_totals(_by_le(bounds, c), _by_le(bounds, s))
    if counts is not None:
        counts.restarted = []
    if totals is None:
        return verdict(m.name, Verdict.INCONCLUSIVE, "no data: no series of this histogram so far")
    events, tot = totals
    v = compare_tick(
        m.name,
        m.kind,
        events,
        tot,
        run.previous.get(m.name),
        alpha=m.alpha,
        tolerance=m.tolerance,
        min_requests=m.min_requests,
        note=note,
        clustering=m.clustering,
    )
    if v.comparison is not None:
        run.previous[m.name] = v.comparison
    return v


def _by_le(bounds: tuple[float, ...], values: list[float]) -> dict[float, float]:
    return {math.inf: values[0], **dict(zip(bounds, values[1:], strict=True))}


def _baseline(run: _Run, t: float, weight: float, metrics: list[ComparedMetric], line: int) -> TickResult:
    detail = (
        "baseline reading at t = 0: counting starts here (the workflow's first tick is one interval later)"
    )
    verdicts = [verdict(m.name, Verdict.INCONCLUSIVE, detail) for m in metrics]
    return TickResult(
        run=run.name,
        t=t,
        weight=weight,
        tick=Verdict.INCONCLUSIVE,
        decision=Decision("continue"),
        may_end_bake=False,
        verdicts=verdicts,
        baseline=True,
        line=line,
    )


# --- reading and checking one record ----------------------------------------------------------


def _parse(line: int, text: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except ValueError as err:
        raise InvalidData(line, "", f"not JSON ({err})") from None
    if not isinstance(record, dict):
        raise InvalidData(line, "", "each line must be a JSON object (one analysis tick)")
    return record


def _number(line: int, where: str, value: Any, low: float = 0.0, high: float = math.inf) -> float:
    if type(value) is int and low <= value <= high:  # the common case, quickly
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidData(line, where, f"expected a number, got {json.dumps(value)}")
    if not low <= value <= high:
        span = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise InvalidData(line, where, f"{value:g} is not {span}")
    return value


def _fields(
    line: int, record: dict[str, Any], metrics: dict[str, ComparedMetric]
) -> tuple[str, float, float, dict[str, Any]]:
    for key in ("run", "t", "weight", "metrics"):
        if key not in record:
            raise InvalidData(line, key, "missing (each record has run, t, weight and metrics)")
    run = record["run"]
    if not isinstance(run, str | int) or isinstance(run, bool):
        raise InvalidData(line, "run", f"expected a string, got {json.dumps(run)}")
    t = _number(line, "t", record["t"])
    weight = _number(line, "weight", record["weight"], 0.0, 100.0)
    data = record["metrics"]
    if not isinstance(data, dict):
        raise InvalidData(line, "metrics", "expected an object of metric name -> list of series")
    for name, series in data.items():
        if name not in metrics:
            known = ", ".join(metrics)
            raise InvalidData(
                line, f"metrics.{name}", f"not a `compare: stable` metric of the spec (those are: {known})"
            )
        if not isinstance(series, list):
            raise InvalidData(line, f"metrics.{name}", "expected a list of series")
    return str(run), t, weight, data


def _count(line: int, run: _Run, m: ComparedMetric, series: list[Any], baseline: bool) -> None:
    counts = run.counts.setdefault(m.name, _Counts())
    seen: set[tuple[str, str]] = set()
    for i, s in enumerate(series):
        where = f"metrics.{m.name}[{i}]"
        if not isinstance(s, dict):
            raise InvalidData(line, where, "expected an object with version, requests and errors or buckets")
        version = s.get("version")
        if version not in VERSIONS:
            raise InvalidData(
                line, f"{where}.version", f'expected "stable" or "canary", got {json.dumps(version)}'
            )
        instance = s.get("instance", "")
        if not isinstance(instance, str):
            raise InvalidData(line, f"{where}.instance", f"expected a string, got {json.dumps(instance)}")
        if (version, instance) in seen:
            raise InvalidData(line, where, f"series {version}/{instance or '(no instance)'} appears twice")
        seen.add((version, instance))
        if m.kind == "errors":
            values = _error_values(line, where, s)
        else:
            values = _bucket_values(line, where, s, run, m.name)
        counts.add(version, instance, values, baseline)


def _error_values(line: int, where: str, s: dict[str, Any]) -> list[float]:
    for key in ("requests", "errors"):
        if key not in s:
            raise InvalidData(
                line, f"{where}.{key}", "missing (an error metric's series has requests and errors)"
            )
    return [_number(line, f"{where}.requests", s["requests"]), _number(line, f"{where}.errors", s["errors"])]


def _bucket_values(line: int, where: str, s: dict[str, Any], run: _Run, metric: str) -> list[float]:
    """`[requests, bucket(le_1), ...]` of one histogram series, checked (the hot path of a backtest)."""
    buckets = s.get("buckets")
    if not isinstance(buckets, dict):
        raise InvalidData(
            line, f"{where}.buckets", "missing (a latency metric's series has cumulative buckets)"
        )
    keys = tuple(buckets)
    layout = run.layouts.get(metric)
    if layout is None or layout[0] != keys:
        layout = _layout(line, where, keys, run, metric)
        run.layouts[metric] = layout
    order = layout[1]
    values = [buckets[k] for k in order]
    for i, v in enumerate(values):
        if not ((type(v) is int or type(v) is float) and 0 <= v < math.inf):
            _number(line, f"{where}.buckets.{order[i]}", v)  # raises, saying why
    total = values[0]
    if "requests" in s and _number(line, f"{where}.requests", s["requests"]) != total:
        raise InvalidData(
            line, f"{where}.requests", f'{s["requests"]:g} is not the "+Inf" bucket ({total:g})'
        )
    upper = [*values[2:], total]
    for i in range(1, len(values)):
        if values[i] > upper[i - 1]:
            raise InvalidData(
                line,
                f"{where}.buckets",
                f"not cumulative in le: {values[i]:g} at le={order[i]} is above the next "
                f"bound's {upper[i - 1]:g}",
            )
    return values


def _layout(
    line: int, where: str, keys: tuple[str, ...], run: _Run, metric: str
) -> tuple[tuple[str, ...], list[str]]:
    """The keys of a series' buckets and their order: `+Inf`, then the finite bounds increasing."""
    by_le: dict[float, str] = {}
    for key in keys:
        try:
            le = float(key)
        except ValueError:
            raise InvalidData(
                line, f"{where}.buckets.{key}", "a bucket bound `le` must parse as a number"
            ) from None
        if math.isnan(le) or le in by_le:
            raise InvalidData(line, f"{where}.buckets.{key}", "not a number, or the same bound twice")
        by_le[le] = key
    if math.inf not in by_le:
        raise InvalidData(line, f"{where}.buckets", 'the "+Inf" bucket is required (it counts all requests)')
    bounds = tuple(sorted(b for b in by_le if b != math.inf))
    known = run.bounds.setdefault(metric, bounds)
    if bounds != known:
        raise InvalidData(
            line,
            f"{where}.buckets",
            f"bounds {list(bounds)} differ from this metric's first series {list(known)}; every series "
            "of a histogram has the same bounds",
        )
    return keys, [by_le[math.inf], *(by_le[b] for b in bounds)]
