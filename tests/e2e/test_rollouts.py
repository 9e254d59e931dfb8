"""Whole rollouts on the real stack: dev server, `sluice worker`, HAProxy, demo services, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Stack
from tests.support.load import LoadGenerator, send_requests
from tests.support.procs import ManagedProcess, wait_until
from tests.support.temporal import start_worker

pytestmark = pytest.mark.integration


def status(stack: Stack) -> dict[str, Any]:
    """The status read in-process; `test_status_json_is_what_the_cli_prints` ties it to the CLI."""
    return stack.status()


def test_status_json_is_what_the_cli_prints(stack: Stack, worker: ManagedProcess) -> None:
    spec = stack.spec([{"set_weight": 50}, {"pause": "1s"}, {"set_weight": 100}])
    start(stack, spec)
    final = wait_status(stack, lambda s: s["phase"] == "promoted")
    done = stack.sluice("status", stack.service, "--output", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == final


def wait_status(stack: Stack, check: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def ok() -> bool:
        nonlocal last
        last = status(stack)
        return check(last)

    try:
        wait_until(ok, timeout, interval=0.3, what="rollout status")
    except TimeoutError as err:
        raise AssertionError(f"status never matched; last: {json.dumps(last, indent=1)}") from err
    return last


def share_of_new_version(stack: Stack, requests: int = 100) -> float:
    counts = send_requests(stack.haproxy.url, requests)
    assert counts.total == requests, counts
    return counts.by_version["v2"] / requests


def start(stack: Stack, spec: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    done = stack.sluice("start", "-f", str(spec), *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_healthy_rollout_is_promoted_with_weights_checked_by_real_requests(
    stack: Stack, worker: ManagedProcess
) -> None:
    spec = stack.spec(
        [{"set_weight": 10}, {"pause": {}}, {"set_weight": 50}, {"pause": {}}, {"set_weight": 100}],
        interval="1s",
        inconclusive_limit=1000,
        metrics=[
            {"name": "canary-5xx", "provider": "haproxy", "max": 0.05, "min_requests": 5},
            {
                "name": "smoke",
                "provider": "http",
                "url": f"{stack.canary_url}/healthz",
                "min_success_ratio": 1.0,
            },
        ],
    )
    assert share_of_new_version(stack) == 0.0
    start(stack, spec)

    at10 = wait_status(stack, lambda s: s["phase"] == "paused" and s["step_index"] == 1)
    assert at10["weights"] == {"stable": 90, "canary": 10}
    assert share_of_new_version(stack, 200) == pytest.approx(0.10, abs=0.02)
    assert stack.sluice("resume", stack.service, "--reason", "10% looks good").returncode == 0

    at50 = wait_status(stack, lambda s: s["phase"] == "paused" and s["step_index"] == 3)
    assert at50["weights"] == {"stable": 50, "canary": 50}
    assert share_of_new_version(stack, 200) == pytest.approx(0.50, abs=0.02)
    verdicts = {v["metric"]: v for v in at50["verdicts"]}
    assert verdicts["smoke"]["verdict"] == "pass"
    assert verdicts["canary-5xx"]["verdict"] == "pass", verdicts["canary-5xx"]
    assert verdicts["canary-5xx"]["counts"]["requests"] >= 5
    assert stack.sluice("resume", stack.service, "--reason", "50% looks good").returncode == 0

    final = wait_status(stack, lambda s: s["phase"] == "promoted")
    assert final["weights"] == {"stable": 0, "canary": 100}
    assert share_of_new_version(stack) == 1.0
    assert [a["action"] for a in final["actions"]] == ["resume", "resume"]


def test_failing_canary_is_rolled_back_by_itself(stack: Stack, worker: ManagedProcess) -> None:
    spec = stack.spec(
        [{"set_weight": 20}, {"pause": "2m"}, {"set_weight": 100}],
        interval="1s",
        inconclusive_limit=30,
        metrics=[{"name": "canary-5xx", "provider": "haproxy", "max": 0.05, "min_requests": 10}],
    )
    env = {**os.environ, **stack.server.env()}
    with LoadGenerator(stack.haproxy.url, rate=40):
        waiting = subprocess.Popen(
            [sys.executable, "-m", "sluice", "start", "-f", str(spec), "--wait"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            wait_status(stack, lambda s: (s.get("weights") or {}).get("canary") == 20)
            stack.canary_errors(1.0)
            out, err = waiting.communicate(timeout=60)
        finally:
            waiting.kill()
    assert waiting.returncode == 1, out + err
    assert "rolled_back" in out + err or "rolled back" in out + err
    final = status(stack)
    assert final["phase"] == "rolled_back"
    assert final["weights"] == {"stable": 100, "canary": 0}
    assert final["rollback"]["verified_at"] is not None
    assert "canary-5xx" in final["message"]
    # How fast is bench/rollback_time.py's job; here: the analysis, not a timeout, decided it.
    assert "canary-5xx" in final["rollback"]["reason"]
    counts = send_requests(stack.haproxy.url, 100)
    assert counts.by_version == {"v1": 100}
    assert counts.by_status == {200: 100}

    query = f"SluiceService='{stack.service}' AND SluicePhase='rolled_back'"

    def listed() -> bool:
        done = stack.temporal("workflow", "list", "--query", query, "--output", "json")
        return done.returncode == 0 and f"rollout-{stack.service}" in done.stdout

    wait_until(listed, 30, interval=0.5, what="search attributes visible to `temporal workflow list`")


def test_sluice_pause_holds_a_rollout_past_its_bake(stack: Stack, worker: ManagedProcess) -> None:
    # A bake long enough that the pause lands inside it even on a loaded machine.
    spec = stack.spec([{"set_weight": 10}, {"pause": "8s"}, {"set_weight": 100}])
    start(stack, spec)
    wait_status(stack, lambda s: s["step_index"] == 1 and (s.get("weights") or {}).get("canary") == 10)
    paused = stack.sluice("pause", stack.service, "--reason", "checking dashboards", "--by", "alice")
    assert paused.returncode == 0, paused.stderr
    time.sleep(10)  # past the bake
    held = status(stack)
    assert held["phase"] == "paused" and held["step_index"] == 1
    assert held["weights"] == {"stable": 90, "canary": 10}
    assert held["actions"][0] | {"at": None} == {
        "action": "pause",
        "reason": "checking dashboards",
        "by": "alice",
        "at": None,
        "step_index": 1,
        "verified": False,  # `--by` is what the sender typed
        "gate": None,
    }
    assert stack.sluice("resume", stack.service, "--reason", "fine").returncode == 0
    wait_status(stack, lambda s: s["phase"] == "promoted")
    assert share_of_new_version(stack) == 1.0


def test_worker_killed_mid_bake_and_a_new_worker_finishes(
    stack: Stack, worker: ManagedProcess, tmp_path: Path
) -> None:
    spec = stack.spec([{"set_weight": 30}, {"pause": "5s"}, {"set_weight": 100}])
    start(stack, spec)
    wait_status(stack, lambda s: s["step_index"] == 1 and (s.get("weights") or {}).get("canary") == 30)
    os.kill(worker.pid, signal.SIGKILL)
    wait_until(lambda: not worker.running, 10, what="worker gone")
    assert share_of_new_version(stack) == pytest.approx(0.30, abs=0.02)
    replacement = start_worker(stack.server, tmp_path / "worker-2.log")
    try:
        final = wait_status(stack, lambda s: s["phase"] == "promoted", timeout=90)
    finally:
        replacement.stop()
    assert final["weights"] == {"stable": 0, "canary": 100}
    assert share_of_new_version(stack) == 1.0


def test_duplicate_start_exits_4_and_a_rerun_attaches(stack: Stack, worker: ManagedProcess) -> None:
    first = stack.spec([{"set_weight": 10}, {"pause": {}}], version="v2")
    start(stack, first)
    wait_status(stack, lambda s: s["phase"] == "paused")

    rerun = stack.sluice("start", "-f", str(first))
    assert rerun.returncode == 0, rerun.stderr
    assert "attach" in (rerun.stdout + rerun.stderr).lower()

    other = stack.spec([{"set_weight": 10}, {"pause": {}}], version="v3")
    refused = stack.sluice("start", "-f", str(other))
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "v2" in refused.stderr and "Traceback" not in refused.stderr

    aborted = stack.sluice("abort", stack.service, "--reason", "superseded by v3")
    assert aborted.returncode == 0, aborted.stderr
    final = wait_status(stack, lambda s: s["phase"] == "aborted")
    assert final["weights"] == {"stable": 100, "canary": 0}
    assert share_of_new_version(stack) == 0.0
    # A finished rollout can be started again.
    again = stack.sluice("start", "-f", str(other))
    assert again.returncode == 0, again.stderr
    wait_status(stack, lambda s: s["version"] == "v3" and s["phase"] == "paused")
    stack.sluice("abort", stack.service, "--reason", "test over")


async def test_continue_as_new_keeps_memo_and_search_attributes_so_a_rerun_attaches(
    stack: Stack, worker: ManagedProcess
) -> None:
    from temporalio.client import Client
    from temporalio.common import SearchAttributePair, TypedSearchAttributes
    from temporalio.contrib.pydantic import pydantic_data_converter

    from sluice.contracts import search_attributes as sa
    from sluice.contracts.calls import RolloutInput
    from sluice.contracts.spec import load_spec

    path = stack.spec(
        [{"set_weight": 10}, {"pause": {}}],
        interval="500ms",
        metrics=[
            {
                "name": "smoke",
                "provider": "http",
                "url": f"{stack.canary_url}/healthz",
                "min_success_ratio": 1,
            }
        ],
    )
    spec = load_spec(path.read_text())
    client = await Client.connect(stack.server.address, data_converter=pydantic_data_converter)
    # Started the way `sluice start` does, plus a low continue-as-new threshold.
    await client.start_workflow(
        "Rollout",
        RolloutInput(spec=spec, spec_digest=spec.digest(), continue_as_new_after_events=60),
        id=spec.workflow_id,
        task_queue="sluice",
        memo={"spec_digest": spec.digest(), "started_by": "test"},
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.SERVICE, spec.service),
                SearchAttributePair(sa.VERSION, spec.version),
                SearchAttributePair(sa.PHASE, "progressing"),
                SearchAttributePair(sa.WEIGHT, 0),
            ]
        ),
    )
    wait_status(stack, lambda s: s["continued_as_new"] >= 2, timeout=60)
    desc = await client.get_workflow_handle(spec.workflow_id).describe()
    assert await desc.memo_value("spec_digest") == spec.digest()
    assert desc.typed_search_attributes.get(sa.SERVICE) == spec.service
    assert desc.typed_search_attributes.get(sa.PHASE) == "paused"
    rerun = stack.sluice("start", "-f", str(path))
    assert rerun.returncode == 0, rerun.stderr
    assert "attach" in (rerun.stdout + rerun.stderr).lower()
    assert stack.sluice("abort", stack.service, "--reason", "test over").returncode == 0
    final = wait_status(stack, lambda s: s["phase"] == "aborted")
    assert final["weights"] == {"stable": 100, "canary": 0}
