"""Detection benchmark: false rollbacks and time to detect for three canary judges on the same streams.

Run `python -m bench.detection` (about a minute; `--runs N` for more A/A runs). A benchmark, not
a test: it prints a table and writes `bench/results/detection.json`.

Each run simulates 30 minutes of a canary at 10% of the traffic:
- requests: Poisson arrivals at `rps` x (1 + 0.5 sin(2 pi t / 15 min + random phase)), a load
  that varies over time; each request goes to the new version with probability 0.1;
- errors: Bernoulli per request at the version's error rate;
- latency: lognormal (median 50 ms, sigma 0.5; stable p95 = 114 ms), seen through the
  Prometheus client's default histogram buckets (5 ms ... 2.5 s), as a real Prometheus would;
  a regression of +x% p95 scales the new version's latencies by 1 + x.
The new version is as good as stable (A/A) or worse from its first request. Three judges see the
same counts:
1. flagger: Flagger's defaults: every 1 m, a check fails when the new version's success rate
   over the last minute is below 99% (request-success-rate) or its p99 latency above 500 ms
   (request-duration); roll back after `threshold` = 5 failed checks;
2. kayenta: every 10 s, Mann-Whitney U on the per-10 s series so far (error ratio, or p95 from
   the histogram) of the new version against stable, two-sided at 98% confidence and the new
   version worse; no correction for looking again and again;
3. sluice: every 10 s, `activities.sequential` as the providers run it: `compare: stable`,
   alpha 0.01, tolerance 0.1.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from sluice.activities.sequential import log_e_value, log_e_value_of_bounds, split_log_lr

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

INTERVAL = 10.0  # seconds between looks of kayenta and sluice
FLAGGER_EVERY = 6  # Flagger's 1 m interval, in looks
FLAGGER_THRESHOLD = 5
HORIZON = 30 * 60.0
WEIGHT = 0.1
ALPHA = 0.01
TOLERANCE = 0.1
KAYENTA_CONFIDENCE = 0.98
BUCKETS: Floats = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
MEDIAN, SIGMA = 0.05, 0.5
JUDGES = ("flagger", "kayenta", "sluice")
RESULTS = Path(__file__).parent / "results" / "detection.json"


@dataclass(frozen=True)
class Scenario:
    """One simulated situation: what is compared, how much traffic, how bad the new version is."""

    kind: Literal["errors", "latency"]
    rps: float
    stable: float
    """Error rate (errors) or latency scale (latency, 1.0) of stable."""
    canary: float

    @property
    def aa(self) -> bool:
        return self.stable == self.canary

    @property
    def label(self) -> str:
        if self.kind == "errors":
            what = f"errors {self.stable:.1%} -> {self.canary:.1%}"
        else:
            what = "latency A/A" if self.aa else f"latency p95 +{self.canary - 1:.0%}"
        return f"{what} @ {self.rps:g} rps"


@dataclass
class Outcome:
    """How one judge did on one scenario."""

    scenario: str
    judge: str
    runs: int
    rollback_rate: float
    median_seconds: float | None
    median_canary_requests: float | None


def simulate(s: Scenario, runs: int, rng: np.random.Generator) -> dict[str, Ints]:
    """Per-look counts per run: requests, errors and histogram bucket counts of both versions."""
    looks = int(HORIZON / INTERVAL)
    t = (np.arange(looks) + 0.5) * INTERVAL
    phase = rng.uniform(0, 2 * math.pi, (runs, 1))
    mean = s.rps * INTERVAL * (1 + 0.5 * np.sin(2 * math.pi * t / 900.0 + phase))
    n_c = rng.poisson(mean * WEIGHT)
    n_s = rng.poisson(mean * (1 - WEIGHT))
    out: dict[str, Ints] = {"n_c": n_c, "n_s": n_s}
    if s.kind == "errors":
        out["x_c"] = rng.binomial(n_c, s.canary)
        out["x_s"] = rng.binomial(n_s, s.stable)
    else:
        out["h_c"] = rng.multinomial(n_c, _bucket_probabilities(s.canary))
        out["h_s"] = rng.multinomial(n_s, _bucket_probabilities(s.stable))
    return out


def _bucket_probabilities(scale: float) -> Floats:
    """Probability of each bucket (last: above the top bound) for latency median `MEDIAN * scale`."""
    z = (np.log(BUCKETS) - math.log(MEDIAN * scale)) / SIGMA
    cdf = np.append(stats.norm.cdf(z), 1.0)
    p: Floats = np.diff(np.concatenate([[0.0], cdf]))
    return p


def quantile(hist: Ints, q: float) -> Floats:
    """`histogram_quantile(q, ...)` over the last axis of per-bucket counts (NaN without data)."""
    cum = np.cumsum(hist, axis=-1).astype(np.float64)
    total = cum[..., -1]
    rank = q * total
    idx = np.minimum(np.argmax(cum >= rank[..., None], axis=-1), len(BUCKETS) - 1)
    lower = np.where(idx > 0, BUCKETS[np.maximum(idx - 1, 0)], 0.0)
    upper = BUCKETS[idx]
    below = np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None], -1)[..., 0]
    below = np.where(idx > 0, below, 0.0)
    inside = np.take_along_axis(hist, idx[..., None], -1)[..., 0]
    frac = np.where(inside > 0, (rank - below) / np.maximum(inside, 1), 1.0)
    out: Floats = np.where(total > 0, lower + (upper - lower) * np.clip(frac, 0, 1), np.nan)
    return out


def slow_events(hist: Ints) -> Ints:
    """Requests slower than each finite bound: total minus the cumulative bucket count."""
    cum = np.cumsum(hist, axis=-1)
    out: Ints = cum[..., -1:] - cum[..., :-1]
    return out


# --- judges: each returns the first look (index) at which it rolls back, or -1 -----------------


def first_true(flags: Bools) -> Ints:
    hit = flags.any(axis=1)
    out: Ints = np.where(hit, flags.argmax(axis=1), -1)
    return out


def flagger(s: Scenario, d: dict[str, Ints]) -> Ints:
    runs, looks = d["n_c"].shape
    minutes = looks // FLAGGER_EVERY
    n_c = d["n_c"][:, : minutes * FLAGGER_EVERY].reshape(runs, minutes, FLAGGER_EVERY).sum(-1)
    if s.kind == "errors":
        x_c = d["x_c"][:, : minutes * FLAGGER_EVERY].reshape(runs, minutes, FLAGGER_EVERY).sum(-1)
        failed = (n_c > 0) & (x_c > 0.01 * n_c)
    else:
        h = d["h_c"][:, : minutes * FLAGGER_EVERY].reshape(runs, minutes, FLAGGER_EVERY, -1).sum(2)
        failed = np.nan_to_num(quantile(h, 0.99)) > 0.5
    minute = first_true(np.cumsum(failed, axis=1) >= FLAGGER_THRESHOLD)
    out: Ints = np.where(minute >= 0, (minute + 1) * FLAGGER_EVERY - 1, -1)
    return out


def kayenta(s: Scenario, d: dict[str, Ints]) -> Ints:
    if s.kind == "errors":
        canary = d["x_c"] / np.maximum(d["n_c"], 1)
        stable = d["x_s"] / np.maximum(d["n_s"], 1)
    else:
        canary = np.nan_to_num(quantile(d["h_c"], 0.95))
        stable = np.nan_to_num(quantile(d["h_s"], 0.95))
    runs, looks = canary.shape
    flags = np.zeros((runs, looks), dtype=bool)
    for k in range(3, looks + 1):  # a few points per series before the first comparison
        a, b = canary[:, :k], stable[:, :k]
        with np.errstate(all="ignore"):
            p = stats.mannwhitneyu(a, b, axis=1, alternative="two-sided", method="asymptotic").pvalue
        worse = np.median(a, axis=1) > np.median(b, axis=1)
        worse |= (np.median(a, axis=1) == np.median(b, axis=1)) & (a.mean(axis=1) > b.mean(axis=1))
        flags[:, k - 1] = (np.nan_to_num(p, nan=1.0) < 1 - KAYENTA_CONFIDENCE) & worse
    return first_true(flags)


def sluice(s: Scenario, d: dict[str, Ints]) -> Ints:
    threshold = math.log(1 / ALPHA)
    if s.kind == "errors":
        llr = np.cumsum(split_log_lr(d["x_c"], d["x_s"], d["n_c"], d["n_s"], TOLERANCE), axis=1)
        return first_true(log_e_value(llr) >= threshold)
    e_c, e_s = slow_events(d["h_c"]), slow_events(d["h_s"])
    runs, looks = d["n_c"].shape
    acc = np.zeros((runs, e_c.shape[-1], 20))
    flags = np.zeros((runs, looks), dtype=bool)
    for k in range(looks):
        acc += split_log_lr(e_c[:, k], e_s[:, k], d["n_c"][:, k, None], d["n_s"][:, k, None], TOLERANCE)
        flags[:, k] = log_e_value_of_bounds(acc) >= threshold
    return first_true(flags)


def evaluate(s: Scenario, runs: int, seed: int) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    d = simulate(s, runs, rng)
    canary_so_far = np.cumsum(d["n_c"], axis=1)
    out = []
    for name, judge in (("flagger", flagger), ("kayenta", kayenta), ("sluice", sluice)):
        look = judge(s, d)
        hit = look >= 0
        seconds = (look[hit] + 1) * INTERVAL
        requests = canary_so_far[np.flatnonzero(hit), look[hit]]
        out.append(
            Outcome(
                scenario=s.label,
                judge=name,
                runs=runs,
                rollback_rate=float(hit.mean()),
                median_seconds=float(np.median(seconds)) if hit.any() else None,
                median_canary_requests=float(np.median(requests)) if hit.any() else None,
            )
        )
    return out


def scenarios() -> list[Scenario]:
    out = []
    for rps in (10.0, 100.0):
        out += [
            Scenario("errors", rps, 0.01, 0.01),
            Scenario("errors", rps, 0.001, 0.001),
            Scenario("latency", rps, 1.0, 1.0),
            Scenario("errors", rps, 0.01, 0.02),
            Scenario("errors", rps, 0.01, 0.05),
            Scenario("errors", rps, 0.001, 0.01),
            Scenario("latency", rps, 1.0, 1.2),
            Scenario("latency", rps, 1.0, 1.5),
        ]
    return out


def cell(o: Outcome, aa: bool) -> str:
    if aa:
        return f"{o.rollback_rate:.1%} false"
    if o.median_seconds is None:
        return "0% detected"
    return f"{o.rollback_rate:.0%} in {o.median_seconds:g}s/{o.median_canary_requests:g} req"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="false rollbacks and time to detect of three judges")
    parser.add_argument("--runs", type=int, default=2000, help="A/A runs per scenario (default 2000)")
    parser.add_argument("--regression-runs", type=int, default=500, help="runs per regression scenario")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    started = time.monotonic()
    outcomes: list[Outcome] = []
    rows = []
    for i, s in enumerate(scenarios()):
        found = evaluate(s, args.runs if s.aa else args.regression_runs, args.seed + i)
        outcomes += found
        rows.append([s.label, *(cell(o, s.aa) for o in found)])
    took = time.monotonic() - started

    header = ["scenario (canary at 10%, 30 min)", *JUDGES]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"| {' | '.join(h.ljust(w) for h, w in zip(header, widths, strict=True))} |")
    print(f"|{'|'.join('-' * (w + 2) for w in widths)}|")
    for r in rows:
        print(f"| {' | '.join(c.ljust(w) for c, w in zip(r, widths, strict=True))} |")
    machine = f"{platform.machine()} {platform.processor() or ''} {platform.python_version()}".strip()
    print(
        f"\n{args.runs} runs per A/A scenario, {args.regression_runs} per regression; "
        f"'in Xs/N req' = detection rate, median time and new-version requests to roll back. "
        f"{took:.0f}s on {machine}."
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine,
                "seconds": round(took, 1),
                "settings": {
                    "interval_s": INTERVAL,
                    "horizon_s": HORIZON,
                    "canary_weight": WEIGHT,
                    "alpha": ALPHA,
                    "tolerance": TOLERANCE,
                    "flagger": {"interval_s": INTERVAL * FLAGGER_EVERY, "threshold": FLAGGER_THRESHOLD},
                    "kayenta_confidence": KAYENTA_CONFIDENCE,
                    "seed": args.seed,
                },
                "outcomes": [asdict(o) for o in outcomes],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
