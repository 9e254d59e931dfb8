"""Benchmark: history events per analysis tick and per step, how long a rollout can run before
continue-as-new, and how fast blue/green switches back to blue, on the real local stack.

1. History: rollouts without analysis (10 shifts vs 1; 10 bakes vs none) and one with analysis
   at `interval: 500ms` run on the dev server; events are counted from their histories.
   "Longest rollout before continue-as-new" divides Temporal's default suggestion threshold
   (4096 events, `limit.historyCount.suggestContinueAsNew`) and hard limit (51200 events) by
   the events per tick, at a 5 s interval. Sluice continues as new at the suggestion, so a
   rollout's own length is unbounded; these are the lengths of one run.
2. Switch-back: blue/green with 100% on green and a post-promotion watch (`interval: 1s`,
   HAProxy error ratio, 50 requests/s). Green starts answering 500; we measure the first
   failing request → 100% on blue applied and read back (history), and → the last answer
   from green (load generator).

Prints tables and writes JSON to bench/results/strategies.json. Not a test.
Usage: .venv/bin/python -m bench.strategies [--runs 5] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.rollback_time import _activity_completions
from sluice.contracts.calls import RolloutInput
from sluice.contracts.names import TASK_QUEUE, WORKFLOW_TYPE
from sluice.contracts.spec import RolloutSpec, parse_spec
from sluice.contracts.status import RolloutStatus
from tests.support.load import LoadGenerator
from tests.support.stack import LocalStack, start_local_stack

RESULTS = Path(__file__).resolve().parent / "results"
SUGGEST_AT = 4096
HARD_LIMIT = 51200


def _spec(stack: LocalStack, version: str, **fields: Any) -> RolloutSpec:
    data: dict[str, Any] = {
        "service": stack.service,
        "version": version,
        "stable_version": "v1",
        "router": stack.haproxy.router(),
        **fields,
    }
    return parse_spec(data)


async def _run(client: Client, spec: RolloutSpec) -> tuple[RolloutStatus, Any]:
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        RolloutInput(spec=spec, spec_digest=spec.digest()),
        id=spec.workflow_id,
        task_queue=TASK_QUEUE,
        result_type=RolloutStatus,
    )
    result = await handle.result()
    return result, await handle.fetch_history()


async def history_figures(stack: LocalStack, client: Client) -> dict[str, Any]:
    async def events(**fields: Any) -> tuple[int, RolloutStatus]:
        stack.reset_weights()
        result, history = await _run(client, _spec(stack, "v2", **fields))
        return len(history.events), result

    shifts10, _ = await events(steps=[{"set_weight": w} for w in range(10, 101, 10)])
    shifts1, _ = await events(steps=[{"set_weight": 100}])
    bakes10, _ = await events(steps=[{"set_weight": 10}, *[{"pause": "200ms"}] * 10, {"set_weight": 100}])
    bakes0, _ = await events(steps=[{"set_weight": 10}, {"set_weight": 100}])
    metric = {
        "name": "smoke",
        "provider": "http",
        "url": f"{stack.canary_url}/healthz",
        "min_success_ratio": 1,
    }
    analysed, result = await events(
        steps=[{"set_weight": 10}, {"pause": "20s"}, {"set_weight": 100}],
        analysis={"interval": "500ms", "metrics": [metric]},
    )
    per_shift = (shifts10 - shifts1) / 9
    per_bake = (bakes10 - bakes0) / 10
    ticks = result.analysis.ticks
    # The same steps without analysis: the rest is what the ticks added.
    plain, _ = await events(steps=[{"set_weight": 10}, {"pause": "20s"}, {"set_weight": 100}])
    per_tick = (analysed - plain) / ticks
    day = 86400
    return {
        "events_per_set_weight_step": per_shift,
        "events_per_bake_step": per_bake,
        "events_per_analysis_tick": round(per_tick, 2),
        "ticks_measured": ticks,
        "suggest_continue_as_new_at_events": SUGGEST_AT,
        "hard_limit_events": HARD_LIMIT,
        "hours_at_5s_before_suggestion": round(SUGGEST_AT / per_tick * 5 / 3600, 2),
        "hours_at_5s_before_hard_limit": round(HARD_LIMIT / per_tick * 5 / 3600, 2),
        "runs_per_day_at_5s": round(day / (SUGGEST_AT / per_tick * 5), 1),
    }


async def switch_back_run(stack: LocalStack, client: Client, load: LoadGenerator, run: int) -> dict[str, Any]:
    version = f"v2-bg{run}"
    stack.deploy("canary", version)
    stack.reset_weights()
    spec = _spec(
        stack,
        version,
        strategy="blue_green",
        pre_promotion={"duration": "1s"},
        post_promotion="5m",
        scale_down_delay="10m",
        analysis={
            "interval": "1s",
            "inconclusive_limit": 60,
            "metrics": [{"name": "green-5xx", "provider": "haproxy", "max": 0.01, "min_requests": 20}],
        },
    )
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        RolloutInput(spec=spec, spec_digest=spec.digest()),
        id=spec.workflow_id,
        task_queue=TASK_QUEUE,
        result_type=RolloutStatus,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = await handle.query("status", result_type=RolloutStatus)
        if (
            status.weights
            and status.weights.canary == 100
            and any(v.verdict == "pass" for v in status.verdicts)
        ):
            break
        await asyncio.sleep(0.2)
    else:
        raise RuntimeError(f"run {run}: green never passed its watch analysis")
    load.reset()
    wall_broke, mono_broke = time.time(), time.monotonic()
    stack.break_canary(1.0)
    result = await asyncio.wait_for(handle.result(), 60)
    await asyncio.sleep(1.0)
    counts = load.counts()
    if result.phase != "rolled_back":
        raise RuntimeError(f"run {run}: ended {result.phase}: {result.message}")
    history = await handle.fetch_history()
    first_fail = counts.first_seen[version]
    rollback_done = next(t for kind, t in _activity_completions(history) if kind == "rollback_traffic")
    return {
        "run": run,
        "to_blue_s": round(rollback_done - (wall_broke + first_fail - mono_broke), 3),
        "last_green_s": round(counts.last_seen[version] - first_fail, 3),
        "failed_requests": counts.by_version_status.get((version, 500), 0),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-strategies-"))
    stack = start_local_stack(workdir, service="bench-strategies")
    rows: list[dict[str, Any]] = []
    try:
        client = await Client.connect(stack.server.address, data_converter=pydantic_data_converter)
        history = await history_figures(stack, client)
        with LoadGenerator(stack.haproxy.url, rate=args.rate) as load:
            for run in range(1, args.runs + 1):
                row = await switch_back_run(stack, client, load, run)
                rows.append(row)
                print(
                    f"run {run}: to blue {row['to_blue_s']:.2f}s, last green answer "
                    f"{row['last_green_s']:.2f}s, failed {row['failed_requests']}",
                    flush=True,
                )
    finally:
        stack.close()
    return {
        "benchmark": "strategies",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "history": history,
        "switch_back": {
            "rate_rps": args.rate,
            "interval": "1s",
            "median_to_blue_s": statistics.median(r["to_blue_s"] for r in rows),
            "max_to_blue_s": max(r["to_blue_s"] for r in rows),
            "median_last_green_s": statistics.median(r["last_green_s"] for r in rows),
            "median_failed_requests": statistics.median(r["failed_requests"] for r in rows),
            "runs": rows,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50.0)
    report = asyncio.run(main_async(parser.parse_args()))
    h, s = report["history"], report["switch_back"]
    print()
    print("| measure | value |")
    print("|---|---|")
    for name, value in (
        ("history events per analysis tick", f"{h['events_per_analysis_tick']:g}"),
        ("history events per `set_weight` step", f"{h['events_per_set_weight_step']:g}"),
        ("history events per bake (`pause: 30s`) step", f"{h['events_per_bake_step']:g}"),
        (
            "one run at `interval: 5s` before Temporal suggests continue-as-new",
            f"{h['days_at_5s_before_suggestion']} days",
        ),
        (
            "one run at `interval: 5s` before the hard history limit",
            f"{h['days_at_5s_before_hard_limit']} days",
        ),
        (
            f"blue/green: first failing request → 100% on blue (median of {len(s['runs'])})",
            f"{s['median_to_blue_s']:.2f} s (max {s['max_to_blue_s']:.2f} s)",
        ),
        ("blue/green: first failing request → last answer from green", f"{s['median_last_green_s']:.2f} s"),
        ("blue/green: failed requests users got", f"{s['median_failed_requests']:g}"),
    ):
        print(f"| {name} | {value} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "strategies.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {RESULTS / 'strategies.json'}")


if __name__ == "__main__":
    main()
