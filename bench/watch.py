"""The post-promotion watch in compare mode: false rollbacks of a healthy version, detection of a failing one.

Run `python -m bench.watch` (a few minutes; `--runs`, `--detection-runs` for fewer). A benchmark,
not a test: it prints a table and writes `bench/results/watch.json`.

Every run is judged by `sluice backtest`'s engine (`sluice.runtime.backtest`), i.e. by the
providers' per-tick comparison and the workflow's `judge`, with the defaults a spec gets when
it sets no analysis options (interval 5 s, alpha 0.01, tolerance 0.1, min_requests 20,
failure_limit 0, inconclusive_limit 6, on_inconclusive rollback). A run is a rollout of one
`compare: stable` error metric at 100 rps (Poisson per tick, Bernoulli errors): 5 minutes with
the new version at 10%, then a 10-minute post-promotion watch at 100%, where stable serves
nothing. The new version is healthy throughout (A/A: the same error rate as stable), or from
the watch's first tick fails a share of its requests. Reported: the share of runs rolled back
(A/A: at any time, whatever the cause, with its exact 95% Clopper-Pearson interval; failing:
during the watch), and for failing runs the median and the 95th percentile of the time from
the watch's start to the rollback.

The assumption the watch rests on is the simulation's too: stable's error rate during the
watch would have been what it was before (see `activities/sequential.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy import stats

from sluice.contracts.spec import AnalysisSpec, parse_spec
from sluice.runtime.backtest import backtest

RESULTS = Path(__file__).parent / "results" / "watch.json"
INTERVAL = 5
CANARY_TICKS = 60  # 5 minutes at 10%
WATCH_TICKS = 120  # 10 minutes at 100%
RPS = 100.0


@dataclass
class Row:
    scenario: str
    runs: int
    rolled_back: int
    rate: float
    ci95: tuple[float, float]
    median_s_after_watch_start: float | None
    p95_s_after_watch_start: float | None
    within_60s: float | None
    within_two_intervals: float | None


def analysis() -> AnalysisSpec:
    spec = parse_spec(
        {
            "service": "checkout",
            "version": "v2",
            "stable_version": "v1",
            "router": {
                "type": "haproxy",
                "admin_socket": "/run/haproxy/admin.sock",
                "backend": "be",
                "stable_server": "stable",
                "canary_server": "canary",
            },
            "steps": [{"set_weight": 10}, {"pause": "5m"}],
            "post_promotion": "10m",
            "analysis": {"metrics": [{"name": "errors", "provider": "haproxy", "compare": "stable"}]},
        }
    )
    assert spec.analysis is not None
    return spec.analysis


def records(run: str, stable_rate: float, watch_rate: float, rng: np.random.Generator) -> list[str]:
    """One rollout's JSON lines: a t = 0 baseline, 60 ticks at 10%, 120 ticks at 100%."""
    c_req = c_err = s_req = s_err = 0
    lines = [_line(run, 0, 10, 0, 0, 0, 0)]
    for k in range(1, CANARY_TICKS + WATCH_TICKS + 1):
        watch = k > CANARY_TICKS
        n = int(rng.poisson(RPS * INTERVAL))
        n_c = n if watch else int(rng.binomial(n, 0.1))
        c_req += n_c
        c_err += int(rng.binomial(n_c, watch_rate if watch else stable_rate))
        s_req += n - n_c
        s_err += int(rng.binomial(n - n_c, stable_rate))
        lines.append(_line(run, INTERVAL * k, 100 if watch else 10, c_req, c_err, s_req, s_err))
    return lines


def _line(run: str, t: int, weight: int, c_req: int, c_err: int, s_req: int, s_err: int) -> str:
    series = [
        {"version": "canary", "requests": c_req, "errors": c_err},
        {"version": "stable", "requests": s_req, "errors": s_err},
    ]
    return json.dumps({"run": run, "t": t, "weight": weight, "metrics": {"errors": series}})


def scenario(a: AnalysisSpec, stable_rate: float, watch_rate: float, runs: int, seed: int) -> Row:
    rng = np.random.default_rng(seed)
    watch_start = CANARY_TICKS * INTERVAL
    rolled_back = 0
    after: list[float] = []
    for r in range(runs):
        for result in backtest(a, records(f"r{r}", stable_rate, watch_rate, rng)):
            if result.decision.action == "rollback":
                rolled_back += 1
                after.append(float(result.t) - watch_start)
    aa = watch_rate == stable_rate
    label = (
        f"healthy, {stable_rate:.1%} errors on both"
        if aa
        else f"{watch_rate:.0%} errors from the watch's start"
    )
    low, high = clopper_pearson(rolled_back, runs)
    watch_hits = np.array([s for s in after if s > 0])
    return Row(
        scenario=f"{label} (stable {stable_rate:.1%})",
        runs=runs,
        rolled_back=rolled_back,
        rate=rolled_back / runs,
        ci95=(round(low, 5), round(high, 5)),
        median_s_after_watch_start=None if aa or not len(watch_hits) else float(np.median(watch_hits)),
        p95_s_after_watch_start=None if aa or not len(watch_hits) else float(np.percentile(watch_hits, 95)),
        within_60s=None if aa else float((watch_hits <= 60).sum() / runs),
        within_two_intervals=None if aa else float((watch_hits <= 2 * INTERVAL).sum() / runs),
    )


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    low = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="A/A runs per scenario")
    parser.add_argument("--detection-runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    a = analysis()
    started = time.monotonic()
    cases = [
        (0.01, 0.01, args.runs),
        (0.001, 0.001, args.runs),
        (0.01, 0.05, args.detection_runs),
        (0.001, 0.05, args.detection_runs),
        (0.01, 0.92, args.detection_runs),
        (0.01, 1.0, args.detection_runs),
    ]
    rows = [scenario(a, s, w, n, args.seed + i) for i, (s, w, n) in enumerate(cases)]
    took = time.monotonic() - started
    print(
        f"| scenario (10% for 5 min, then 100% for a 10 min watch, {RPS:g} rps) | runs | rolled back | "
        "95% CI | median / p95 s after the watch began | within 60 s | within 2 intervals |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        timing = (
            f"{r.median_s_after_watch_start:g} / {r.p95_s_after_watch_start:g}"
            if r.median_s_after_watch_start is not None and r.p95_s_after_watch_start is not None
            else "-"
        )
        within = f"{r.within_60s:.1%}" if r.within_60s is not None else "-"
        two = f"{r.within_two_intervals:.1%}" if r.within_two_intervals is not None else "-"
        ci = f"{r.ci95[0]:.2%}-{r.ci95[1]:.2%}"
        print(f"| {r.scenario} | {r.runs} | {r.rate:.2%} | {ci} | {timing} | {within} | {two} |")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(f"\n{took:.0f} s on {machine}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine,
                "command": "python -m bench.watch " + " ".join(sys.argv[1:]),
                "seconds": round(took, 1),
                "settings": {
                    "interval_s": INTERVAL,
                    "rps": RPS,
                    "canary_ticks": CANARY_TICKS,
                    "watch_ticks": WATCH_TICKS,
                    "seed": args.seed,
                    "spec": "defaults",
                },
                "rows": [asdict(r) for r in rows],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
