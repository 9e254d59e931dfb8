"""Benchmark: how long `sluice report` takes over N finished rollouts.

A dev server gets N finished rollouts quickly from a stand-in `Rollout` workflow on its own
task queue: it leaves the history a real rollout leaves (search-attribute upserts of each phase,
`preflight`, `set_traffic`, one timer and one `analyze` activity per analysis tick, then a
promotion or a `rollback_traffic`) and returns a `RolloutStatus`, but with millisecond timers
and activities that touch nothing. One in five rolls back, one in ten is aborted by `bench`.
Then the report is built the way `sluice report` builds it (visibility listing, one history
read per rollout, the figures, the text and HTML renderings), each part timed.

Prints a table and writes JSON to bench/results/report_scale.json. Not a test.
Usage: .venv/bin/python -m bench.report_scale [--sizes 100,1000] [--ticks 10] [--services 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from sluice.cli.report import render_text
from sluice.cli.report_html import render_html
from sluice.contracts import search_attributes as sa
from sluice.contracts.calls import AnalyzeResult, TrafficState
from sluice.contracts.names import WORKFLOW_TYPE
from sluice.contracts.status import (
    MetricVerdict,
    OperatorAction,
    Phase,
    RollbackState,
    RolloutStatus,
    Verdict,
    Weights,
)
from sluice.runtime.client import SluiceClient
from sluice.runtime.insights import summarize
from sluice.runtime.rollout_history import list_records, read_runs
from tests.support.procs import ManagedProcess, free_port
from tests.support.temporal import DevServer, dev_server_argv

RESULTS = Path(__file__).resolve().parent / "results"
QUEUE = "sluice-bench-report"


class FakeInput(BaseModel):
    service: str
    version: str
    outcome: str
    ticks: int


class FakeTraffic(BaseModel):
    canary_weight: int


@activity.defn(name="preflight")
async def preflight(_: FakeTraffic) -> TrafficState:
    return TrafficState(stable_weight=100, canary_weight=0)


@activity.defn(name="set_traffic")
async def set_traffic(inp: FakeTraffic) -> TrafficState:
    return TrafficState(stable_weight=100 - inp.canary_weight, canary_weight=inp.canary_weight)


@activity.defn(name="rollback_traffic")
async def rollback_traffic(_: FakeTraffic) -> TrafficState:
    return TrafficState(stable_weight=100, canary_weight=0)


@activity.defn(name="analyze")
async def analyze(inp: FakeTraffic) -> AnalyzeResult:
    failing = inp.canary_weight < 0  # the workflow asks for a failing tick with a negative weight
    return AnalyzeResult(
        verdicts=[
            MetricVerdict(
                metric="canary-5xx",
                verdict=Verdict.FAIL if failing else Verdict.PASS,
                value=0.3 if failing else 0.001,
                bound="<= 0.02",
                detail="6 of 20 responses were 5xx" if failing else "1 of 900 responses were 5xx",
                counts={"requests": 900.0, "errors": 1.0},
                at=datetime.now(UTC),
            )
        ]
    )


@workflow.defn(name=WORKFLOW_TYPE)
class FakeRollout:
    """Leaves a real rollout's kind of history in milliseconds (see the module docstring)."""

    @workflow.run
    async def run(self, inp: FakeInput) -> RolloutStatus:
        opts: dict[str, Any] = {"start_to_close_timeout": timedelta(seconds=30)}
        status = RolloutStatus(
            service=inp.service,
            version=inp.version,
            stable_version="v0",
            spec_digest=f"digest-{inp.version}",
            phase=Phase.PROGRESSING,
            message="",
            step_index=0,
            step_count=3,
            step="",
            started_at=workflow.now(),
        )
        await workflow.execute_activity(preflight, FakeTraffic(canary_weight=0), **opts)
        await workflow.execute_activity(set_traffic, FakeTraffic(canary_weight=10), **opts)
        workflow.upsert_search_attributes([sa.WEIGHT.value_set(10)])
        for tick in range(inp.ticks):
            await workflow.sleep(timedelta(milliseconds=1))
            fail = inp.outcome == "rolled_back" and tick == inp.ticks - 1
            result = await workflow.execute_activity(
                analyze, FakeTraffic(canary_weight=-1 if fail else 10), **opts
            )
            status.verdicts = result.verdicts
        if inp.outcome == "promoted":
            await workflow.execute_activity(set_traffic, FakeTraffic(canary_weight=100), **opts)
            status.weights = Weights(stable=0, canary=100)
            status.phase, status.message = Phase.PROMOTED, "all steps passed"
        else:
            if inp.outcome == "aborted":
                status.actions.append(
                    OperatorAction(
                        action="abort", reason="bench", by="bench", at=workflow.now(), step_index=1
                    )
                )
                reason = "aborted by bench: bench"
            else:
                reason = "analysis failed (canary-5xx: 6 of 20 responses were 5xx (30%), above the 2% limit)"
            workflow.upsert_search_attributes([sa.PHASE.value_set(Phase.ROLLING_BACK.value)])
            status.rollback = RollbackState(reason=reason, started_at=workflow.now())
            await workflow.execute_activity(rollback_traffic, FakeTraffic(canary_weight=0), **opts)
            status.rollback.verified_at = workflow.now()
            status.weights = Weights(stable=100, canary=0)
            status.phase, status.message = Phase(inp.outcome), reason
        workflow.upsert_search_attributes([sa.PHASE.value_set(status.phase.value)])
        status.finished_at = workflow.now()
        return status


async def create_rollouts(client: Client, first: int, count: int, ticks: int, services: int) -> None:
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        service = f"bench-{i % services}"
        outcome = "rolled_back" if i % 5 == 0 else "aborted" if i % 10 == 1 else "promoted"
        async with gate:
            await client.execute_workflow(
                WORKFLOW_TYPE,
                FakeInput(service=service, version=f"v{i}", outcome=outcome, ticks=ticks),
                id=f"rollout-{service}-{i}",  # one id per run: the bench starts them all at once
                task_queue=QUEUE,
                result_type=RolloutStatus,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.SERVICE, service),
                        SearchAttributePair(sa.VERSION, f"v{i}"),
                        SearchAttributePair(sa.PHASE, Phase.PROGRESSING.value),
                        SearchAttributePair(sa.WEIGHT, 0),
                    ]
                ),
            )

    await asyncio.gather(*(one(i) for i in range(first, first + count)))


async def measure(client: SluiceClient, expected: int) -> dict[str, Any]:
    until = datetime.now(UTC)
    since = until - timedelta(days=1)
    # Visibility is eventually consistent: wait until every closed rollout is listed.
    for _ in range(120):
        records = await list_records(client, since, None)
        if len([r for r in records if r.temporal_status == "completed"]) >= expected:
            break
        await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    records = await list_records(client, since, None)
    t1 = time.perf_counter()
    runs = await read_runs(client, records)
    t2 = time.perf_counter()
    report = summarize(runs, since, until)
    t3 = time.perf_counter()
    render_text(report)
    t4 = time.perf_counter()
    page = render_html(report)
    t5 = time.perf_counter()
    events = [
        len(r.timeline.weights) + len(r.timeline.ticks) + len(r.timeline.phases) for r in runs if r.timeline
    ]
    return {
        "rollouts": len(runs),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "list_s": round(t1 - t0, 3),
        "histories_s": round(t2 - t1, 3),
        "figures_s": round(t3 - t2, 3),
        "text_s": round(t4 - t3, 3),
        "html_s": round(t5 - t4, 3),
        "total_s": round(t5 - t0, 3),
        "html_bytes": len(page.encode()),
        "timeline_items_per_rollout": round(sum(events) / max(len(events), 1), 1),
        "change_failure_rate": report.overall.change_failure_rate,
    }


def in_memory_dev_server(workdir: Path) -> DevServer:
    """A dev server keeping its data in memory: the SQLite file of the tests' fixture would make
    creating the rollouts, not reading them, the slow part."""
    port, ui_port = free_port(), free_port()
    proc = ManagedProcess(dev_server_argv(port, ui_port, None), workdir / "temporal.log", name="dev server")
    proc.start()
    proc.wait_ready(lambda: _answers(port), 60, f"dev server on {port}")
    return DevServer(process=proc, port=port, ui_port=ui_port)


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def main_async(sizes: list[int], ticks: int, services: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-report-") as tmp:
        server = in_memory_dev_server(Path(tmp))
        try:
            temporal = await Client.connect(server.address, data_converter=pydantic_data_converter)
            client = SluiceClient(temporal, server.address)
            async with Worker(
                temporal,
                task_queue=QUEUE,
                workflows=[FakeRollout],
                activities=[preflight, set_traffic, rollback_traffic, analyze],
                workflow_runner=UnsandboxedWorkflowRunner(),
                max_concurrent_activities=64,
            ):
                made = 0
                for size in sizes:
                    began = time.perf_counter()
                    await create_rollouts(temporal, made, size - made, ticks, services)
                    created_s = time.perf_counter() - began
                    made = size
                    row = await measure(client, size)
                    history = await temporal.get_workflow_handle("rollout-bench-2-2").fetch_history()
                    row |= {"create_s": round(created_s, 1), "events_per_history": len(history.events)}
                    rows.append(row)
                    print(
                        f"{row['rollouts']:>6} rollouts: list {row['list_s']:.2f}s, histories "
                        f"{row['histories_s']:.2f}s, figures {row['figures_s']:.3f}s, text "
                        f"{row['text_s']:.3f}s, html {row['html_s']:.2f}s, total {row['total_s']:.2f}s",
                        flush=True,
                    )
        finally:
            server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000", help="report over this many rollouts (cumulative)")
    parser.add_argument("--ticks", type=int, default=5, help="analysis ticks per rollout (default 5)")
    parser.add_argument("--services", type=int, default=10, help="services the rollouts spread over")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows = asyncio.run(main_async(sizes, args.ticks, args.services))
    header = ("rollouts", "events/history", "list", "histories", "figures", "text", "html", "total")
    print()
    print("  ".join(f"{h:>14}" for h in header))
    for r in rows:
        cells = (
            r["rollouts"],
            r["events_per_history"],
            f"{r['list_s']:.2f}s",
            f"{r['histories_s']:.2f}s",
            f"{r['figures_s']:.3f}s",
            f"{r['text_s']:.3f}s",
            f"{r['html_s']:.2f}s",
            f"{r['total_s']:.2f}s",
        )
        print("  ".join(f"{c!s:>14}" for c in cells))
    RESULTS.mkdir(exist_ok=True)
    out = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "ticks_per_rollout": args.ticks,
        "services": args.services,
        "rows": rows,
    }
    (RESULTS / "report_scale.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'report_scale.json'}")


if __name__ == "__main__":
    main()
