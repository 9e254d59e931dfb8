"""Writes `examples/backtest.jsonl`: recorded counters of `examples/compare.yaml`'s three metrics.

Run `python -m bench.backtest_example > examples/backtest.jsonl`. Two runs at 100 rps, 10% on the
new version until t = 120 s and 50% after: `healthy` (0.5% errors on both; the canary pod
restarts at t = 100 s and its counters start over) and `regression` (the new version at 1.5%
errors and 15% slower). Stable's counters have history before the rollout (the t = 0 record).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

EDGES = (0.05, 0.1, 0.25, 0.5, 1.0)
PODS = (("stable", "s1"), ("stable", "s2"), ("canary", "c1"))


def run(
    rng: np.random.Generator,
    name: str,
    canary_err: float,
    canary_slow: float,
    ticks: int,
    restart_at: int | None,
) -> list[dict[str, Any]]:
    prom: dict[tuple[str, str], dict[str, Any]] = {
        p: {"req": 0, "err": 0, "b": np.zeros(len(EDGES), int)} for p in PODS
    }
    for p, c in prom.items():  # stable pods have counted for days before the rollout
        if p[0] == "stable":
            c["req"], c["err"] = 812_000, 3_900
            c["b"] = np.array([404_000, 700_000, 790_000, 808_000, 811_500])
    hap = {"stable": [1_624_000, 7_800], "canary": [0, 0]}
    out = []
    for k in range(ticks + 1):
        t = 5 * k
        weight = 10 if t <= 120 else 50
        if k:
            for (version, _), c in prom.items():
                share = weight / 100 if version == "canary" else (1 - weight / 100) / 2
                n = int(rng.poisson(100 * 5 * share))
                e = int(rng.binomial(n, canary_err if version == "canary" else 0.005))
                scale = canary_slow if version == "canary" else 1.0
                lat = rng.lognormal(np.log(0.05 * scale), 0.6, n)
                c["req"] += n
                c["err"] += e
                c["b"] += (lat[:, None] <= np.array(EDGES)[None, :]).sum(axis=0)
                hap[version][0] += n
                hap[version][1] += e
            if restart_at is not None and t == restart_at:  # the canary pod restarts: its counters start over
                c = prom[("canary", "c1")]
                c["req"], c["err"], c["b"] = 40, 0, np.array([19, 33, 39, 40, 40])
                hap["canary"][0] += 40

        def buckets(c: dict[str, Any]) -> dict[str, int]:
            b = {f"{e:g}": int(x) for e, x in zip(EDGES, c["b"], strict=True)}
            b["+Inf"] = c["req"]
            return b

        out.append(
            {
                "run": name,
                "t": t,
                "weight": weight,
                "metrics": {
                    "errors-vs-stable": [
                        {"version": v, "requests": hap[v][0], "errors": hap[v][1]}
                        for v in ("stable", "canary")
                    ],
                    "prom-errors-vs-stable": [
                        {"version": v, "instance": p, "requests": c["req"], "errors": c["err"]}
                        for (v, p), c in prom.items()
                    ],
                    "latency-vs-stable": [
                        {"version": v, "instance": p, "buckets": buckets(c)} for (v, p), c in prom.items()
                    ],
                },
            }
        )
    return out


def main() -> None:
    rng = np.random.default_rng(7)
    rows = run(rng, "healthy", 0.005, 1.0, 40, restart_at=100) + run(rng, "regression", 0.015, 1.15, 40, None)
    for r in rows:
        print(json.dumps(r, separators=(",", ":")))


if __name__ == "__main__":
    main()
