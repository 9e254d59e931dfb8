"""Fault injection on the real local stack: does a fault ever let a bad or unjudged canary through?

Parts (`--part`, repeatable; default all):

- `worker-kill`: steady load (50 requests/s) through HAProxy, the new version at 10% and
  baking. At a random moment in the first bake the new version starts answering 500 to every
  request, and the worker is SIGKILLed at a random moment from 1 s before to 3 s after that; a
  new worker starts 0-5 s later. Correct: rolled back. Counted: promotions of the failing canary,
  and 500s users got from it after the break.
- `prometheus-hang`: a healthy canary judged by a Prometheus `compare: stable` metric.
  Prometheus is frozen with SIGSTOP (its port stays open and answers nothing) at a random
  moment 1.5-3 s before the last bake ends, and thawed after 60 s or when the rollout ends. Correct:
  nothing is promoted while Prometheus is frozen (no fresh pass can exist); it may be promoted
  after the thaw on a fresh pass, or rolled back / paused as inconclusive. Counted: promotions
  while frozen.

Every run also checks where traffic really is at the end (HAProxy's weights read back) against
the final status: `lost` counts rollouts that never ended within the budget, `intermediate`
those whose real split is neither 100/0 nor 0/100, `stale` those whose status shows weights
HAProxy does not have.

Prints a table and writes JSON to bench/results/chaos.json. Not a test; needs HAProxy and
Prometheus (`scripts/setup`). Usage:
    .venv/bin/python -m bench.chaos [--runs 20] [--part worker-kill] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from sluice.contracts.status import RolloutStatus
from tests.support.load import LoadGenerator
from tests.support.stack import LocalStack, start_local_stack
from tests.support.temporal import start_worker

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("worker-kill", "prometheus-hang")
BAKE_S = 6
END_BUDGET_S = 150.0


def _weights(stack: LocalStack) -> tuple[int, int]:
    """(stable, canary) weights as HAProxy has them now."""
    out = []
    for server in ("stable", "canary"):
        reply = stack.haproxy.command(f"get weight {stack.haproxy.backend}/{server}")
        out.append(int(reply.split()[0]))
    return out[0], out[1]


def _start(stack: LocalStack, spec_text: str, name: str) -> None:
    path = stack.workdir / f"{name}.yaml"
    path.write_text(spec_text)
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "start", "-f", str(path)],
        env={**os.environ, **stack.server.env()},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sluice start failed: {done.stdout}{done.stderr}")


async def _status(client: Client, service: str) -> RolloutStatus | None:
    handle = client.get_workflow_handle(f"rollout-{service}", result_type=RolloutStatus)
    try:
        status: RolloutStatus = await handle.query("status", result_type=RolloutStatus)
    except Exception:
        return None  # no worker answered (it was just killed): try again
    return status


async def _wait_for(client: Client, service: str, check: Any, within: float) -> RolloutStatus | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = await _status(client, service)
        if status is not None and check(status):
            return status
        await asyncio.sleep(0.2)
    return None


async def _outcome(client: Client, service: str, within: float) -> RolloutStatus | None:
    handle = client.get_workflow_handle(f"rollout-{service}", result_type=RolloutStatus)
    try:
        return await asyncio.wait_for(handle.result(), within)
    except Exception:
        return None


def _traffic_checks(stack: LocalStack, final: RolloutStatus | None) -> dict[str, bool]:
    stable, canary = _weights(stack)
    real_total = stable + canary
    share = round(100 * canary / real_total) if real_total else 0
    shown = final.weights if final is not None else None
    return {
        "lost": final is None,
        "intermediate": share not in (0, 100),
        "stale": shown is not None and shown.canary != share,
    }


async def worker_kill(stack: LocalStack, client: Client, rng: random.Random, run: int) -> dict[str, Any]:
    version = f"v2-kill{run}"
    stack.deploy("canary", version)
    stack.reset_weights()
    metrics = [{"name": "canary-5xx", "provider": "haproxy", "max": 0.01, "min_requests": 20}]
    steps: list[dict[str, Any]] = [
        {"set_weight": 10},
        {"pause": f"{BAKE_S}s"},
        {"set_weight": 50},
        {"pause": f"{BAKE_S}s"},
    ]
    _start(stack, stack.spec(version, "v1", steps, interval="1s", metrics=metrics), f"kill-{run}")
    baking = await _wait_for(client, stack.service, lambda s: s.step_index == 1, 60)
    if baking is None:
        raise RuntimeError(f"run {run}: the rollout never reached its first bake")
    with LoadGenerator(stack.haproxy.url, rate=50) as load:
        break_at = rng.uniform(0.5, BAKE_S - 1.0)
        kill_at = break_at + rng.uniform(-1.0, 3.0)
        restart_after = rng.uniform(0.0, 5.0)
        t0 = time.monotonic()
        events = sorted([(max(kill_at, 0.0), "kill"), (break_at, "break")])
        broke_mono = 0.0
        for at, what in events:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            if what == "break":
                stack.break_canary(1.0)
                broke_mono = time.monotonic()
            else:
                os.kill(stack.worker.pid, signal.SIGKILL)
                stack.worker.stop()
        await asyncio.sleep(restart_after)
        stack.worker = start_worker(stack.server, stack.workdir / f"worker-{run}.log")
        final = await _outcome(client, stack.service, END_BUDGET_S)
        await asyncio.sleep(0.5)
        counts = load.counts()
    failed_after_break = counts.by_version_status.get((version, 500), 0)
    del broke_mono
    return {
        "part": "worker-kill",
        "run": run,
        "break_at_s": round(break_at, 2),
        "kill_at_s": round(kill_at, 2),
        "restart_after_s": round(restart_after, 2),
        "phase": final.phase.value if final is not None else "lost",
        "bad_promotion": final is not None and final.phase.value == "promoted",
        "failed_requests": failed_after_break,
        **_traffic_checks(stack, final),
    }


async def prometheus_hang(stack: LocalStack, client: Client, rng: random.Random, run: int) -> dict[str, Any]:
    assert stack.prometheus is not None
    version = f"v2-hang{run}"
    stack.deploy("canary", version)
    stack.reset_weights()
    metrics = [
        {
            "name": "5xx-vs-stable",
            "provider": "prometheus",
            "address": stack.prometheus.url,
            "compare": "stable",
            "requests": 'http_requests_total{version="{{version}}"}',
            "errors": 'http_requests_total{version="{{version}}",code=~"5.."}',
            "min_requests": 10,
        }
    ]
    steps: list[dict[str, Any]] = [
        {"set_weight": 20},
        {"pause": f"{BAKE_S}s"},
        {"set_weight": 50},
        {"pause": f"{BAKE_S}s"},
    ]
    with LoadGenerator(stack.haproxy.url, rate=50):
        _start(
            stack,
            stack.spec(version, "v1", steps, interval="1s", inconclusive_limit=10, metrics=metrics),
            f"hang-{run}",
        )
        last_bake = await _wait_for(client, stack.service, lambda s: s.step_index == 3, 90)
        if last_bake is None:
            raise RuntimeError(f"run {run}: the rollout never reached its last bake")
        # At least one interval (1 s) plus margin before the bake ends: a pass from before the
        # freeze is then too old to end the bake under the fresh-evidence rule.
        await asyncio.sleep(BAKE_S - rng.uniform(1.5, 3.0))
        pid = stack.prometheus.process.pid
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            ended = await _outcome(client, stack.service, 60)
            frozen_for = time.monotonic() - frozen_at
        finally:
            os.kill(pid, signal.SIGCONT)
        final = ended if ended is not None else await _outcome(client, stack.service, END_BUDGET_S)
    promoted_frozen = ended is not None and ended.phase.value == "promoted"
    return {
        "part": "prometheus-hang",
        "run": run,
        "frozen_s": round(frozen_for, 2),
        "phase": final.phase.value if final is not None else "lost",
        "bad_promotion": promoted_frozen,
        "failed_requests": 0,
        **_traffic_checks(stack, final),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    parts = args.part or list(PARTS)
    workdir = Path(tempfile.mkdtemp(prefix="sluice-chaos-"))
    stack = start_local_stack(workdir, service="chaos", with_prometheus="prometheus-hang" in parts)
    rows: list[dict[str, Any]] = []
    try:
        client = await Client.connect(stack.server.address, data_converter=pydantic_data_converter)
        for part in parts:
            for run in range(1, args.runs + 1):
                fn = worker_kill if part == "worker-kill" else prometheus_hang
                row = await fn(stack, client, rng, run)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        stack.close()
    summary = {}
    for part in parts:
        mine = [r for r in rows if r["part"] == part]
        summary[part] = {
            "runs": len(mine),
            "bad_promotions": sum(r["bad_promotion"] for r in mine),
            "lost": sum(r["lost"] for r in mine),
            "intermediate": sum(r["intermediate"] for r in mine),
            "stale": sum(r["stale"] for r in mine),
            "outcomes": {p: sum(r["phase"] == p for r in mine) for p in sorted({r["phase"] for r in mine})},
            "failed_requests_total": sum(r["failed_requests"] for r in mine),
            "failed_requests_max": max((r["failed_requests"] for r in mine), default=0),
        }
    return {
        "benchmark": "chaos",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "settings": {"runs": args.runs, "seed": args.seed, "bake_s": BAKE_S, "parts": parts},
        "summary": summary,
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20, help="runs per part (default 20)")
    parser.add_argument("--part", action="append", choices=PARTS, help="repeatable; default all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "chaos.json"))
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    print()
    columns = ["part", "runs", "bad promotions", "lost", "intermediate", "stale status", "outcomes"]
    print("| " + " | ".join([*columns, "500s after the break (total / max)"]) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for part, s in report["summary"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in s["outcomes"].items())
        print(
            f"| {part} | {s['runs']} | {s['bad_promotions']} | {s['lost']} | {s['intermediate']} | "
            f"{s['stale']} | {outcomes} | {s['failed_requests_total']} / {s['failed_requests_max']} |"
        )
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
