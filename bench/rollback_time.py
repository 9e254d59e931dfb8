"""Benchmark: how fast a failing canary is rolled back on the real local stack.

Steady load through HAProxy (default 50 requests/s), new version at 10%, analysis every 1s.
The judge (`--judge`) is one of:

- `threshold`: HAProxy's counters for the new version, 5xx ratio at most 1%;
- `haproxy-compare`: `compare: stable` on both HAProxy servers' counters (sequential test);
- `prometheus-compare`: `compare: stable` on the demo services' `http_requests_total`, scraped
  every second by a real Prometheus.

In each run the new version starts answering 500 to every request; we measure:

- `to_stable_s`: first failing request users got → HAProxy's weights at 100% stable, applied
  and read back (the rollback activity's completion in the workflow history);
- `last_canary_s`: first failing request → the last request the new version answered, as
  the load generator saw it (shorter by up to one inter-arrival time at the canary's share);
- `failed_requests`: requests that got a 500 from the new version meanwhile;
- `detect_s`: first failing request → the failing verdict returned (from the workflow history);
- `engine_s`: failing verdict returned → rollback activity completed, weights applied and
  read back (workflow history timestamps, the engine's own share).

Prints a table and writes JSON to bench/results/rollback_time.json (`threshold`) or
bench/results/rollback_time_<judge>.json. Not a test.
Usage: .venv/bin/python -m bench.rollback_time [--runs 10] [--rate 50] [--interval 1s] [--judge J]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from sluice.contracts.status import RolloutStatus
from tests.support.load import LoadGenerator
from tests.support.stack import LocalStack, start_local_stack

RESULTS = Path(__file__).resolve().parent / "results"


def _activity_completions(history: Any) -> list[tuple[str, float]]:
    """(activity type, completion time) in history order."""
    scheduled: dict[int, str] = {}
    out: list[tuple[str, float]] = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            kind = scheduled[e.activity_task_completed_event_attributes.scheduled_event_id]
            out.append((kind, e.event_time.ToDatetime(tzinfo=UTC).timestamp()))
    return out


JUDGES = ("threshold", "haproxy-compare", "prometheus-compare")


def judge_metrics(stack: LocalStack, judge: str) -> list[dict[str, Any]]:
    """The analysis metrics of one judge."""
    if judge == "threshold":
        return [{"name": "canary-5xx", "provider": "haproxy", "max": 0.01, "min_requests": 20}]
    if judge == "haproxy-compare":
        return [{"name": "5xx-vs-stable", "provider": "haproxy", "compare": "stable", "min_requests": 20}]
    assert stack.prometheus is not None
    return [
        {
            "name": "5xx-vs-stable",
            "provider": "prometheus",
            "address": stack.prometheus.url,
            "compare": "stable",
            "requests": 'http_requests_total{version="{{version}}"}',
            "errors": 'http_requests_total{version="{{version}}",code=~"5.."}',
            "min_requests": 20,
        }
    ]


async def one_run(
    stack: LocalStack, client: Client, load: LoadGenerator, run: int, interval: str, judge: str
) -> dict[str, Any]:
    version = f"v2-run{run}"
    stack.deploy("canary", version)
    stack.reset_weights()
    spec = stack.workdir / f"bench-{run}.yaml"
    spec.write_text(
        stack.spec(
            version,
            "v1",
            [{"set_weight": 10}, {"pause": "5m"}, {"set_weight": 100}],
            interval=interval,
            inconclusive_limit=60,
            metrics=judge_metrics(stack, judge),
        )
    )
    env = {**os.environ, **stack.server.env()}
    started = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "sluice", "start", "-f", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        raise RuntimeError(f"sluice start failed: {started.stderr}")
    handle = client.get_workflow_handle(f"rollout-{stack.service}", result_type=RolloutStatus)
    # Warm up at 10% until the analysis has passed once with enough requests.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = await handle.query("status", result_type=RolloutStatus)
        if any(v.verdict == "pass" for v in status.verdicts):
            break
        await asyncio.sleep(0.2)
    else:
        raise RuntimeError(f"run {run}: the canary never passed analysis")
    load.reset()
    wall_broke, mono_broke = time.time(), time.monotonic()
    stack.break_canary(1.0)
    result = await asyncio.wait_for(handle.result(), 60)
    await asyncio.sleep(1.0)  # let in-flight requests land
    counts = load.counts()
    history = await handle.fetch_history()
    if result.phase != "rolled_back":
        raise RuntimeError(f"run {run}: ended {result.phase}: {result.message}")
    first_fail = counts.first_seen[version]
    last_canary = counts.last_seen[version]
    completions = _activity_completions(history)
    rollback_done = next(t for kind, t in completions if kind == "rollback_traffic")
    verdict_at = max(t for kind, t in completions if kind == "analyze" and t <= rollback_done)
    # Load-generator times are monotonic; history times are wall clock: align them at the break.
    first_fail_wall = wall_broke + (first_fail - mono_broke)
    return {
        "run": run,
        "to_stable_s": round(rollback_done - first_fail_wall, 3),
        "last_canary_s": round(last_canary - first_fail, 3),
        "failed_requests": counts.by_version_status.get((version, 500), 0),
        "detect_s": round(verdict_at - first_fail_wall, 3),
        "engine_s": round(rollback_done - verdict_at, 3),
        "requests": counts.total,
    }


def median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    stack = start_local_stack(workdir, service="bench", with_prometheus=args.judge == "prometheus-compare")
    rows: list[dict[str, Any]] = []
    try:
        client = await Client.connect(stack.server.address, data_converter=pydantic_data_converter)
        with LoadGenerator(stack.haproxy.url, rate=args.rate) as load:
            for run in range(1, args.runs + 1):
                row = await one_run(stack, client, load, run, args.interval, args.judge)
                rows.append(row)
                print(
                    f"run {run:2d}: to stable {row['to_stable_s']:6.2f}s  "
                    f"last canary answer {row['last_canary_s']:6.2f}s  failed {row['failed_requests']:3d}  "
                    f"detect {row['detect_s']:6.2f}s  engine {row['engine_s'] * 1000:6.0f}ms",
                    flush=True,
                )
    finally:
        stack.close()
    summary = {
        "median_to_stable_s": median(rows, "to_stable_s"),
        "median_last_canary_s": median(rows, "last_canary_s"),
        "median_failed_requests": median(rows, "failed_requests"),
        "median_detect_s": median(rows, "detect_s"),
        "median_engine_s": median(rows, "engine_s"),
        "max_to_stable_s": max(r["to_stable_s"] for r in rows),
        "max_engine_s": max(r["engine_s"] for r in rows),
    }
    return {
        "benchmark": "rollback_time",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "settings": {
            "runs": args.runs,
            "rate_rps": args.rate,
            "canary_weight": 10,
            "interval": args.interval,
            "judge": args.judge,
        },
        "summary": summary,
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--judge", choices=JUDGES, default="threshold")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    s = report["summary"]
    print()
    table = [
        (
            "first failing request → 100% stable",
            f"{s['median_to_stable_s']:.2f} s (max {s['max_to_stable_s']:.2f} s)",
        ),
        ("first failing request → last answer from the new version", f"{s['median_last_canary_s']:.2f} s"),
        ("failed requests users got", f"{s['median_failed_requests']:.0f}"),
        ("first failing request → failing verdict", f"{s['median_detect_s']:.2f} s"),
        (
            "engine: failing verdict → weights applied",
            f"{s['median_engine_s'] * 1000:.0f} ms (max {s['max_engine_s'] * 1000:.0f} ms)",
        ),
    ]
    print(f"| measure (median of {args.runs} runs, judge {args.judge}) | value |")
    print("|---|---|")
    for name, value in table:
        print(f"| {name} | {value} |")
    RESULTS.mkdir(exist_ok=True)
    name = "rollback_time" if args.judge == "threshold" else f"rollback_time_{args.judge.replace('-', '_')}"
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
