"""Speed of `sluice backtest`: judged ticks per second per metric, on this machine.

Run `python -m bench.backtest_speed` (under a minute). A benchmark, not a test: it prints a
table and writes `bench/results/backtest_speed.json`. The target (issue 10) is at least 5,000
ticks per second per metric; the workflow's analysis activity runs the same per-tick code, so
this is also what a tick costs the worker.

Each case writes a synthetic recording to a temporary file (a canary at 10% of 100 rps, A/A,
counters per instance: 3 stable pods and 1 canary pod, 1% errors, latency through the
Prometheus client's 14 default buckets) and times the whole command in-process, as a user
runs it: reading the file, judging, and printing one JSON line per tick to /dev/null. CPU time
of the process (`time.process_time`) is reported beside wall time, since other work shares
the two cores; each case runs three times and the least disturbed run (least CPU time) is
reported, with all three in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sluice.cli.main import run_cli

RESULTS = Path(__file__).parent / "results" / "backtest_speed.json"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
PODS = {"stable": ("s1", "s2", "s3"), "canary": ("c1",)}
REPEATS = 3


def spec(metrics: list[str]) -> dict[str, Any]:
    defs = {
        "errors": {"name": "errors", "provider": "haproxy", "compare": "stable"},
        "prom-errors": {
            "name": "prom-errors",
            "provider": "prometheus",
            "address": "http://127.0.0.1:9090",
            "compare": "stable",
            "requests": 'r{version="{{version}}"}',
            "errors": 'e{version="{{version}}"}',
        },
        "latency": {
            "name": "latency",
            "provider": "prometheus",
            "address": "http://127.0.0.1:9090",
            "compare": "stable",
            "histogram": 'h_bucket{version="{{version}}"}',
        },
    }
    return {
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
        "steps": [{"set_weight": 10}, {"pause": "30m"}],
        "analysis": {"interval": "5s", "metrics": [defs[m] for m in metrics]},
    }


def recording(metrics: list[str], ticks: int, run_length: int, seed: int = 1) -> list[str]:
    """JSON lines: `ticks` records in runs of `run_length`, cumulative counters per pod."""
    rng = np.random.default_rng(seed)
    edges = np.array(BUCKETS)
    lines: list[str] = []
    pods = [(v, p) for v, ps in PODS.items() for p in ps]
    share = {"canary": 0.1, "stable": 0.9 / len(PODS["stable"])}
    counters: dict[tuple[str, str], dict[str, Any]] = {}
    for k in range(ticks):
        step = k % run_length
        if step == 0:
            counters = {pod: {"req": 0, "err": 0, "b": np.zeros(len(edges))} for pod in pods}
        for pod in pods:
            c = counters[pod]
            n = int(rng.poisson(500 * share[pod[0]])) if step else 0
            c["req"] += n
            c["err"] += int(rng.binomial(n, 0.01))
            if n:
                lat = rng.lognormal(np.log(0.05), 0.5, n)
                c["b"] += (lat[:, None] <= edges[None, :]).sum(axis=0)
        data: dict[str, list[dict[str, Any]]] = {}
        for m in metrics:
            rows: list[dict[str, Any]] = []
            for (version, inst), c in counters.items():
                if m == "latency":
                    b = {f"{e:g}": int(x) for e, x in zip(BUCKETS, c["b"], strict=True)}
                    b["+Inf"] = c["req"]
                    rows.append({"version": version, "instance": inst, "buckets": b})
                else:
                    rows.append(
                        {"version": version, "instance": inst, "requests": c["req"], "errors": c["err"]}
                    )
            data[m] = rows
        lines.append(json.dumps({"run": f"r{k // run_length}", "t": 5 * step, "weight": 10, "metrics": data}))
    return lines


def time_case(metrics: list[str], ticks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec(metrics)))
        data = Path(tmp) / "data.jsonl"
        data.write_text("\n".join(recording(metrics, ticks, run_length=360)) + "\n")
        args = ["backtest", "-f", str(spec_file), "--data", str(data), "--output", "json"]
        times: list[tuple[float, float]] = []
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            run_cli(args)  # warm: imports, numpy
            for _ in range(REPEATS):
                wall, cpu = time.perf_counter(), time.process_time()
                code, _ = run_cli(args)
                times.append((time.process_time() - cpu, time.perf_counter() - wall))
                assert code == 0
    cpu, wall = min(times)  # the least disturbed of the repeats: others share the cores
    return {
        "metrics": metrics,
        "ticks": ticks,
        "repeats": REPEATS,
        "cpu_s_each": [round(c, 3) for c, _ in times],
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "ticks_per_s_per_metric_cpu": round(ticks * len(metrics) / cpu),
        "ticks_per_s_per_metric_wall": round(ticks * len(metrics) / wall),
        "ticks_per_s_cpu": round(ticks / cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=10_000)
    args = parser.parse_args()
    cases = [["errors"], ["latency"], ["errors", "prom-errors", "latency"]]
    load_before = os.getloadavg()[0]
    rows = [time_case(m, args.ticks) for m in cases]
    print(
        f"{'metrics':<30} {'ticks':>7} {'cpu s':>7} {'wall s':>7} {'ticks/s/metric (cpu)':>21} {'(wall)':>8}"
    )
    for r in rows:
        print(
            f"{' + '.join(r['metrics']):<30} {r['ticks']:>7} {r['cpu_s']:>7} {r['wall_s']:>7} "
            f"{r['ticks_per_s_per_metric_cpu']:>21} {r['ticks_per_s_per_metric_wall']:>8}"
        )
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "command": "python -m bench.backtest_speed " + " ".join(sys.argv[1:]),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "note": "other processes share the two cores; CPU time is the figure to compare with the target",
        "cases": rows,
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"load average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
