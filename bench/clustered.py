"""Clustered errors: false rollbacks when requests are not independent, before and after the correction.

Run `python -m bench.clustered` (a few minutes; `--runs N` for fewer). A benchmark, not a test:
it prints a table and writes `bench/results/clustered.json`.

The streams are `bench/detection.py`'s (30 minutes, canary at 10%, a load that swings ±50%,
looks every 10 s, alpha 0.01, tolerance 0.1), with errors that break the sequential test's
independence assumption, on identical software (A/A):
- retries: a failing request is retried k times on the same version and fails again each time
  (a service mesh's retries of a persistent error): k + 1 errors and k + 1 requests per failure;
- sticky failing users: 1,000 users with heavy-tailed activity (lognormal, sigma 1.5), 1% of
  them fail every request; each user stays on the version it first reached (10% canary);
- a pod outage: stable runs 9 pods, the canary 1, each with a tenth of the traffic; one of the
  ten pods, at random, fails every request for 30 s at a random moment;
- five metrics at once, each with retries k = 2 (the rollout rolls back if any metric does).
Judges on the same streams: flagger and kayenta as in `bench/detection.py`; **sluice, before**
= the test assuming independence (alpha per metric); **sluice, estimate** = the test with
`clustering: estimate` as the providers run it: each interval's evidence divided by an upper
bound on the clustering stable's own intervals show (`sequential.dispersion`), alpha split
over the metrics. Regression
rows (500 runs) show what the correction costs in detection.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy import stats

from bench.detection import (
    ALPHA,
    HORIZON,
    INTERVAL,
    TOLERANCE,
    WEIGHT,
    Ints,
    Scenario,
    first_true,
    flagger,
    kayenta,
)
from sluice.activities.sequential import dispersion, log_e_value, split_log_lr

RESULTS = Path(__file__).parent / "results" / "clustered.json"
RPS = 100.0
RATE = 0.01


@dataclass
class Row:
    scenario: str
    judge: str
    runs: int
    rolled_back: int
    rate: float
    ci95: tuple[float, float]
    median_seconds: float | None


def _load(runs: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    looks = int(HORIZON / INTERVAL)
    t = (np.arange(looks) + 0.5) * INTERVAL
    phase = rng.uniform(0, 2 * math.pi, (runs, 1))
    return RPS * INTERVAL * (1 + 0.5 * np.sin(2 * math.pi * t / 900.0 + phase)), looks


def retries(k: int, canary_rate: float = RATE) -> Callable[[int, np.random.Generator], dict[str, Ints]]:
    def make(runs: int, rng: np.random.Generator) -> dict[str, Ints]:
        mean, _ = _load(runs, rng)
        n_c, n_s = rng.poisson(mean * WEIGHT), rng.poisson(mean * (1 - WEIGHT))
        y_c, y_s = rng.binomial(n_c, canary_rate), rng.binomial(n_s, RATE)
        return {"n_c": n_c + k * y_c, "n_s": n_s + k * y_s, "x_c": (k + 1) * y_c, "x_s": (k + 1) * y_s}

    return make


def sticky_users(runs: int, rng: np.random.Generator) -> dict[str, Ints]:
    mean, _ = _load(runs, rng)
    users = 1000
    activity = rng.lognormal(0.0, 1.5, (runs, users))
    activity /= activity.sum(axis=1, keepdims=True)
    failing = rng.random((runs, users)) < 0.01
    on_canary = rng.random((runs, users)) < WEIGHT
    share = {
        (c, f): (activity * (on_canary == c) * (failing == f)).sum(axis=1, keepdims=True)
        for c in (True, False)
        for f in (True, False)
    }
    bad_c = rng.poisson(mean * share[(True, True)])
    good_c = rng.poisson(mean * share[(True, False)])
    bad_s = rng.poisson(mean * share[(False, True)])
    good_s = rng.poisson(mean * share[(False, False)])
    return {"n_c": bad_c + good_c, "n_s": bad_s + good_s, "x_c": bad_c, "x_s": bad_s}


def pod_outage(runs: int, rng: np.random.Generator) -> dict[str, Ints]:
    mean, looks = _load(runs, rng)
    pods = rng.poisson(mean[..., None] * 0.1, (runs, looks, 10))  # pod 0 is the canary
    errors = rng.binomial(pods, RATE)
    pod = rng.integers(0, 10, runs)
    start = rng.integers(0, looks - 3, runs)
    for r in range(runs):  # 30 s: three looks of every request failing on one pod
        errors[r, start[r] : start[r] + 3, pod[r]] = pods[r, start[r] : start[r] + 3, pod[r]]
    return {
        "n_c": pods[..., 0],
        "n_s": pods[..., 1:].sum(-1),
        "x_c": errors[..., 0],
        "x_s": errors[..., 1:].sum(-1),
    }


def sluice_before(d: dict[str, Ints], metrics: int = 1) -> Ints:
    """The test as it was: independence assumed, alpha per metric."""
    del metrics
    llr = np.cumsum(split_log_lr(d["x_c"], d["x_s"], d["n_c"], d["n_s"], TOLERANCE), axis=1)
    return first_true(log_e_value(llr) >= math.log(1 / ALPHA))


def sluice_estimate(d: dict[str, Ints], metrics: int = 1) -> Ints:
    """The test as `sequential.advance` runs it with `clustering: estimate`, alpha split over metrics."""
    n_s, x_s = d["n_s"].astype(np.float64), d["x_s"].astype(np.float64)
    served = n_s > 0

    squares = np.where(served, x_s * x_s / np.where(served, n_s, 1.0), 0.0)
    sums = [np.cumsum(a, axis=1) for a in (served.astype(np.float64), x_s, n_s, squares)]
    phi = dispersion(*sums)  # stable's intervals up to each one, as `advance` does
    step = split_log_lr(d["x_c"], d["x_s"], d["n_c"], d["n_s"], TOLERANCE) / phi[..., None]
    return first_true(log_e_value(np.cumsum(step, axis=1)) >= math.log(metrics / ALPHA))


def _as_scenario(d: dict[str, Ints]) -> Scenario:
    del d
    return Scenario("errors", RPS, RATE, RATE)


def evaluate(
    label: str, make: Callable[[int, np.random.Generator], dict[str, Ints]], runs: int, seed: int, aa: bool
) -> list[Row]:
    rng = np.random.default_rng(seed)
    d = make(runs, rng)
    judges: dict[str, Callable[[dict[str, Ints]], Ints]] = {
        "flagger": lambda x: flagger(_as_scenario(x), x),
        "kayenta": lambda x: kayenta(_as_scenario(x), x),
        "sluice, before": sluice_before,
        "sluice, estimate": sluice_estimate,
    }
    return [_row(label, name, judge(d), aa) for name, judge in judges.items()]


def five_metrics(runs: int, seed: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    streams = [retries(2)(runs, rng) for _ in range(5)]
    rows = []
    for name, judge in (("sluice, before", sluice_before), ("sluice, estimate", sluice_estimate)):
        hits = np.stack([judge(d, 5) >= 0 for d in streams]).any(axis=0)
        rows.append(_row("five metrics, retries k=2 (any metric)", name, np.where(hits, 0, -1), True))
    return rows


def _row(label: str, judge: str, look: Ints, aa: bool) -> Row:
    hit = look >= 0
    k, n = int(hit.sum()), len(look)
    low = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    seconds = (look[hit] + 1) * INTERVAL
    return Row(
        label,
        judge,
        n,
        k,
        k / n,
        (round(low, 5), round(high, 5)),
        None if aa or not k else float(np.median(seconds)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--regression-runs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.monotonic()
    rows: list[Row] = []
    aa_cases = [
        ("independent errors (A/A)", retries(0)),
        ("retries k=1 (A/A)", retries(1)),
        ("retries k=3 (A/A)", retries(3)),
        ("retries k=5 (A/A)", retries(5)),
        ("sticky failing users (A/A)", sticky_users),
        ("one pod of ten down 30 s, canary = 1 pod (A/A)", pod_outage),
    ]
    for i, (label, make) in enumerate(aa_cases):
        rows += evaluate(label, make, args.runs, args.seed + i, aa=True)
    rows += five_metrics(args.runs, args.seed + 50)
    regressions = [
        ("1% -> 2%, independent", retries(0, 0.02)),
        ("1% -> 5%, independent", retries(0, 0.05)),
        ("1% -> 5%, retries k=3", retries(3, 0.05)),
    ]
    for i, (label, make) in enumerate(regressions):
        rows += evaluate(label, make, args.regression_runs, args.seed + 100 + i, aa=False)
    took = time.monotonic() - started

    print(
        f"| scenario ({RPS:g} rps, {RATE:.0%} errors, canary 10%, 30 min) | judge | runs | rolled back | "
        "95% CI | median s |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        median = f"{r.median_seconds:g}" if r.median_seconds is not None else "-"
        ci = f"{r.ci95[0]:.2%}-{r.ci95[1]:.2%}"
        print(f"| {r.scenario} | {r.judge} | {r.runs} | {r.rate:.2%} | {ci} | {median} |")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(f"\n{took:.0f} s on {machine}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine,
                "command": "python -m bench.clustered " + " ".join(sys.argv[1:]),
                "seconds": round(took, 1),
                "settings": {
                    "rps": RPS,
                    "error_rate": RATE,
                    "interval_s": INTERVAL,
                    "horizon_s": HORIZON,
                    "canary_weight": WEIGHT,
                    "alpha": ALPHA,
                    "tolerance": TOLERANCE,
                    "seed": args.seed,
                },
                "rows": [asdict(r) for r in rows],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
