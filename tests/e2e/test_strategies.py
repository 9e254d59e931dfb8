"""Blue/green and ring rollouts on the real stack: dev server, worker process, HAProxy, demos, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Stack, running_stack
from tests.e2e.test_rollouts import status, wait_status
from tests.support.load import LoadGenerator, send_requests
from tests.support.procs import ManagedProcess
from tests.support.temporal import DevServer

pytestmark = pytest.mark.integration

ERRORS = {"name": "new-5xx", "provider": "haproxy", "max": 0.05, "min_requests": 5}


def router_of(stack: Stack) -> dict[str, Any]:
    return stack.haproxy.router()


def write(stack: Stack, data: dict[str, Any]) -> Path:
    path = stack.workdir / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_blue_green_switches_at_once_and_back_to_blue_on_a_failing_watch(
    stack: Stack, worker: ManagedProcess
) -> None:
    spec = write(
        stack,
        {
            "service": stack.service,
            "version": "v2",
            "stable_version": "v1",
            "strategy": "blue_green",
            "router": router_of(stack),
            "pre_promotion": {
                "duration": "4s",
                "analysis": {
                    "interval": "1s",
                    "metrics": [
                        {
                            "name": "preview",
                            "provider": "http",
                            "url": f"{stack.canary_url}/healthz",
                            "min_success_ratio": 1.0,
                        }
                    ],
                },
            },
            "post_promotion": "5m",
            "scale_down_delay": "10m",
            "analysis": {"interval": "1s", "inconclusive_limit": 60, "metrics": [ERRORS]},
        },
    )
    with LoadGenerator(stack.haproxy.url, rate=40) as load:
        done = stack.sluice("start", "-f", str(spec))
        assert done.returncode == 0, done.stdout + done.stderr
        before = wait_status(stack, lambda s: s["analysis"]["ticks"] >= 1 and s["weights"]["canary"] == 0)
        assert before["verdicts"][0]["metric"] == "preview"
        assert load.counts().by_version.get("v2", 0) == 0  # green has had no user traffic
        switched = wait_status(stack, lambda s: (s.get("weights") or {}).get("canary") == 100, timeout=30)
        assert switched["step"].startswith("post-promotion watch")
        assert switched["keep_stable_until"] is not None
        assert send_requests(stack.haproxy.url, 50).by_version == {"v2": 50}
        wait_status(stack, lambda s: s["analysis"]["ticks"] >= 2 and s["verdicts"][0]["verdict"] == "pass")
        stack.canary_errors(1.0)
        final = wait_status(stack, lambda s: s["phase"] == "rolled_back", timeout=30)
    assert final["weights"] == {"stable": 100, "canary": 0}
    assert final["rollback"]["verified_at"] is not None
    assert "new-5xx" in final["rollback"]["reason"]  # the watch's analysis decided it; speed is bench's job
    assert send_requests(stack.haproxy.url, 50).by_version == {"v1": 50}


@pytest.fixture
def second_ring(dev_server: DevServer, stack: Stack) -> Iterator[Stack]:
    workdir = stack.workdir / "ring2"
    workdir.mkdir()
    with running_stack(dev_server, workdir, stack.service, haproxy_service=f"{stack.service}-b") as ring:
        yield ring


def test_two_rings_second_fails_and_both_roll_back(
    stack: Stack, second_ring: Stack, worker: ManagedProcess
) -> None:
    spec = write(
        stack,
        {
            "service": stack.service,
            "version": "v2",
            "stable_version": "v1",
            "steps": [{"set_weight": 50}, {"pause": "3s"}, {"set_weight": 100}],
            "analysis": {"interval": "1s", "inconclusive_limit": 60, "metrics": [ERRORS]},
            "rings": [
                {"name": "first", "router": router_of(stack)},
                {"name": "second", "router": router_of(second_ring)},
            ],
        },
    )
    second_ring.canary_errors(1.0)  # v2 is broken in the second ring only
    plan = stack.sluice("plan", "-f", str(spec))
    assert plan.returncode == 0 and "first" in plan.stdout and "second" in plan.stdout, plan.stderr
    with LoadGenerator(stack.haproxy.url, rate=20), LoadGenerator(second_ring.haproxy.url, rate=20):
        done = stack.sluice("start", "-f", str(spec), "--wait", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    # `--wait` prints each ring's transitions as they happen.
    assert "ring first: rolled_back" in done.stdout and "ring second: rolled_back" in done.stdout, done.stdout
    final = status(stack)
    assert final["strategy"] == "rings" and final["phase"] == "rolled_back"
    rings = {r["name"]: r for r in final["rings"]}
    assert rings["first"]["phase"] == rings["second"]["phase"] == "rolled_back"
    # The saga: the failing ring rolled itself back first, then the earlier ring.
    assert rings["second"]["finished_at"] < rings["first"]["finished_at"]
    assert rings["first"]["weights"] == {"stable": 100, "canary": 0}
    for s in (stack, second_ring):
        assert send_requests(s.haproxy.url, 40).by_version == {"v1": 40}
    text = stack.sluice("status", stack.service)
    assert "rings:" in text.stdout and "second" in text.stdout, text.stdout
    listed = stack.sluice("list", "--service", stack.service, "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert [r["workflow_id"] for r in json.loads(listed.stdout)] == [f"rollout-{stack.service}"]


def test_sluice_approve_and_the_approve_signal_on_a_real_gate(stack: Stack, worker: ManagedProcess) -> None:
    spec = stack.spec(
        [
            {"set_weight": 20},
            {"approval": {"approvers": ["alice"], "timeout": "10m"}},
            {"set_weight": 50},
            {"approval": {"approvers": ["alice"]}},
            {"set_weight": 100},
        ]
    )
    assert stack.sluice("start", "-f", str(spec)).returncode == 0
    wait_status(stack, lambda s: s["phase"] == "awaiting_approval" and s["step_index"] == 1)
    # The CLI's update: a stranger is refused with the reason, exit 2, nothing changes.
    refused = stack.sluice("approve", stack.service, "--by", "mallory", "--reason", "lgtm")
    assert refused.returncode == 2 and "'mallory' may not approve" in refused.stderr, refused.stderr
    approved = stack.sluice("approve", stack.service, "--by", "alice", "--reason", "20% looks fine")
    assert approved.returncode == 0, approved.stderr
    second = wait_status(stack, lambda s: s["phase"] == "awaiting_approval" and s["step_index"] == 3)
    assert second["weights"] == {"stable": 50, "canary": 50}
    # The signal, as the Web UI's dialog sends it.
    signal = stack.temporal(
        "workflow",
        "signal",
        "--workflow-id",
        f"rollout-{stack.service}",
        "--name",
        "approve",
        "--input",
        json.dumps({"by": "alice", "reason": "50% looks fine"}),
    )
    assert signal.returncode == 0, signal.stderr
    final = wait_status(stack, lambda s: s["phase"] == "promoted")
    assert [(a["action"], a["by"]) for a in final["actions"]] == [("approve", "alice"), ("approve", "alice")]
    assert send_requests(stack.haproxy.url, 20).by_version == {"v2": 20}
