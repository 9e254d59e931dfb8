"""Break glass and one rollout per traffic target, on the real stack (dev server, workers, HAProxy, CLI).

- `sluice abort --force` on a rollout made deaf on purpose: no worker at all, or a worker
  whose workflow tasks keep failing. HAProxy must end at 100/0 with real requests all on v1,
  and the workflow terminated with a reason naming who did it and the weights read back.
- It refuses (exit 5) and touches nothing when it cannot reach the router.
- A second rollout on a backend a running rollout drives is refused (exit 4, naming it),
  whatever its service name; also for a rollout started without the memo (history read).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import ROOT, Stack, WorkerPool, running_stack
from tests.support.load import send_requests
from tests.support.procs import ManagedProcess, wait_until
from tests.support.temporal import DevServer, start_worker

pytestmark = pytest.mark.integration


def weights(stack: Stack) -> tuple[int, int]:
    """(stable, canary) as HAProxy has them now: the truth, not anyone's status."""

    def one(server: str) -> int:
        reply = stack.haproxy.command(f"get weight {stack.haproxy.backend}/{server}")
        return int(reply.split()[0])

    return one("stable"), one("canary")


def wait_weights(stack: Stack, wanted: tuple[int, int], timeout: float = 60) -> None:
    wait_until(lambda: weights(stack) == wanted, timeout, interval=0.2, what=f"HAProxy weights {wanted}")


def history(stack: Stack) -> str:
    done = stack.temporal("workflow", "show", "-w", f"rollout-{stack.service}", "--output", "json")
    assert done.returncode == 0, done.stderr
    return done.stdout


def execution_status(stack: Stack, workflow_id: str | None = None) -> str:
    done = stack.temporal(
        "workflow", "describe", "-w", workflow_id or f"rollout-{stack.service}", "--output", "json"
    )
    assert done.returncode == 0, done.stderr
    status: str = json.loads(done.stdout)["workflowExecutionInfo"]["status"]
    return status


def terminated_reason(stack: Stack) -> str:
    events = json.loads(history(stack))["events"]
    last = events[-1]
    assert "workflowExecutionTerminatedEventAttributes" in last, last
    reason: str = last["workflowExecutionTerminatedEventAttributes"]["reason"]
    return reason


def start_at_30(stack: Stack, worker: ManagedProcess) -> Path:
    """A rollout at 30% baking for 10 minutes, started with a live worker; returns its spec."""
    spec = stack.spec([{"set_weight": 30}, {"pause": "10m"}, {"set_weight": 100}])
    done = stack.sluice("start", "-f", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    wait_weights(stack, (70, 30))
    counts = send_requests(stack.haproxy.url, 100)
    assert 25 <= counts.by_version.get("v2", 0) <= 35, counts  # a roundrobin cycle may straddle the change
    return spec


def force(stack: Stack, *extra: str) -> Any:
    return stack.sluice(
        "abort", stack.service, "--force", "--reason", "worker gone, canary must go", "--by", "alice", *extra
    )


def test_abort_force_without_any_worker_puts_all_on_stable_and_terminates(
    stack: Stack, worker: ManagedProcess
) -> None:
    spec = start_at_30(stack, worker)
    worker.stop()  # deaf: no worker will ever run this rollout's compensation
    # A CI job re-running its `start --wait` attaches and waits for the outcome.
    env = {**os.environ, **stack.server.env()}
    argv = [sys.executable, "-m", "sluice", "start", "-f", str(spec), "--wait"]
    waiting = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )

    # First the router is out of reach: refused, nothing touched, the workflow still runs.
    socket = Path(stack.haproxy.router()["admin_socket"])
    away = socket.with_name("away.sock")
    socket.rename(away)
    try:
        refused = force(stack)
    finally:
        away.rename(socket)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "cannot force the abort" in refused.stderr and "Nothing was touched" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert weights(stack) == (70, 30)
    assert execution_status(stack) == "WORKFLOW_EXECUTION_STATUS_RUNNING"
    assert '"signalName": "abort"' not in history(stack)

    done = force(stack, "--output", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert weights(stack) == (100, 0)
    counts = send_requests(stack.haproxy.url, 100)
    assert counts.by_version == {"v1": 100}, counts
    result = json.loads(done.stdout)
    assert result["terminated"] and result["signalled"]
    assert [r["verified"] for r in result["routers"]] == [True]
    assert result["routers"][0]["before"]["canary_weight"] == 30
    assert execution_status(stack) == "WORKFLOW_EXECUTION_STATUS_TERMINATED"
    reason = terminated_reason(stack)
    assert reason.startswith("sluice abort --force by alice: 100% stable applied by the CLI and verified:")
    assert "stable 100 / canary 0" in reason and "worker gone, canary must go" in reason
    shown = history(stack)
    assert '"signalName": "abort"' in shown  # who and why, recorded before the terminate

    # The waiting CI job ends as for an abort (3), quoting the break glass.
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 3, out + err
    assert "was ended by sluice abort --force by alice" in out + err
    # `status` says how it ended even without a worker (it exits 5: no worker answers).
    shown_status = stack.sluice("status", stack.service)
    assert shown_status.returncode == 5, shown_status.stdout + shown_status.stderr
    assert "by sluice abort --force by alice: 100% stable applied" in shown_status.stdout

    # Once ended by the break glass, a second one only re-applies and re-reads.
    again = force(stack)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already ended (terminated)" in again.stdout
    assert weights(stack) == (100, 0)


def test_abort_force_on_a_rollout_whose_workflow_task_keeps_failing(
    stack: Stack, worker: ManagedProcess, worker_pool: WorkerPool, tmp_path: Path
) -> None:
    start_at_30(stack, worker)
    worker.stop()
    env = {**stack.server.env(), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "broken-worker.log"
    broken = ManagedProcess(
        [sys.executable, "-m", "tests.support.broken_worker"], log, env=env, cwd=ROOT, name="broken worker"
    ).start()
    try:
        broken.wait_ready(lambda: "polling task queue" in log.read_text(), 30, "polling")
        # A plain abort reaches the history but nothing acts on it: the task fails every time.
        plain = stack.sluice("abort", stack.service, "--reason", "please roll back")
        assert plain.returncode == 0, plain.stdout + plain.stderr

        def task_failing() -> bool:
            return "WorkflowTaskFailed" in history(stack) or "broken on purpose" in history(stack)

        wait_until(task_failing, 30, interval=0.5, what="a failed workflow task")
        assert weights(stack) == (70, 30)

        done = force(stack)
        assert done.returncode == 0, done.stdout + done.stderr
        assert (
            "workflow terminated" in done.stdout
            and "stable 70 / canary 30 → stable 100 / canary 0" in done.stdout
        )
    finally:
        broken.stop()
    assert weights(stack) == (100, 0)
    assert send_requests(stack.haproxy.url, 50).by_version == {"v1": 50}
    assert execution_status(stack) == "WORKFLOW_EXECUTION_STATUS_TERMINATED"
    assert "verified: " in terminated_reason(stack)


@pytest.fixture
def second_ring(dev_server: DevServer, stack: Stack) -> Iterator[Stack]:
    workdir = stack.workdir / "ring2"
    workdir.mkdir()
    with running_stack(dev_server, workdir, stack.service, haproxy_service=f"{stack.service}-b") as ring:
        yield ring


def test_abort_force_on_a_ring_rollout_sets_every_ring_to_stable(
    stack: Stack, second_ring: Stack, worker: ManagedProcess
) -> None:
    spec = stack.workdir / "rings.yaml"
    data = {
        "service": stack.service,
        "version": "v2",
        "stable_version": "v1",
        "steps": [{"set_weight": 30}, {"pause": {}}, {"set_weight": 100}],
        "rings": [
            {"name": "first", "router": stack.haproxy.router()},
            {"name": "second", "router": second_ring.haproxy.router()},
        ],
    }
    spec.write_text(yaml.safe_dump(data))
    done = stack.sluice("start", "-f", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    wait_weights(stack, (70, 30))
    resumed = stack.sluice("resume", stack.service, "--reason", "first ring looks good")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    wait_weights(stack, (0, 100))  # the first ring promoted
    wait_weights(second_ring, (70, 30))  # the second one paused at 30%

    # Another service on the second ring's backend: refused, naming the ring rollout.
    other = stack.spec([{"set_weight": 10}])
    other.write_text(
        yaml.safe_dump(
            dict(yaml.safe_load(other.read_text()), service="intruder", router=second_ring.haproxy.router())
        )
    )
    refused = stack.sluice("start", "-f", str(other))
    assert refused.returncode == 4 and f"rollout-{stack.service}" in refused.stderr, refused.stderr

    worker.stop()
    forced = force(stack)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "ring first: " in forced.stdout and "ring second: " in forced.stdout, forced.stdout
    for ring in (stack, second_ring):
        assert weights(ring) == (100, 0)
        assert send_requests(ring.haproxy.url, 40).by_version == {"v1": 40}
    assert execution_status(stack) == "WORKFLOW_EXECUTION_STATUS_TERMINATED"
    child = f"rollout-{stack.service}-ring-second"
    wait_until(
        lambda: execution_status(stack, child) == "WORKFLOW_EXECUTION_STATUS_TERMINATED",
        30,
        what="the running ring terminated with its ring rollout",
    )


def test_abort_force_reads_an_encrypted_spec_only_with_the_codec_key(
    stack: Stack, worker_pool: WorkerPool, tmp_path: Path
) -> None:
    worker_pool.stop()  # its worker has no key: it must not pick up this rollout's tasks
    key = {"SLUICE_CODEC_KEY": base64.b64encode(os.urandom(32)).decode()}
    worker = start_worker(stack.server, tmp_path / "encrypting-worker.log", extra_env=key)
    try:
        spec = stack.spec([{"set_weight": 30}, {"pause": "10m"}, {"set_weight": 100}])
        done = stack.sluice("start", "-f", str(spec), env=key)
        assert done.returncode == 0, done.stdout + done.stderr
        wait_weights(stack, (70, 30))
    finally:
        worker.stop()
    assert str(stack.haproxy.admin_socket) not in history(stack)  # the spec is ciphertext

    refused = force(stack)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "SLUICE_CODEC_KEY" in refused.stderr and "Nothing was touched" in refused.stderr
    assert weights(stack) == (70, 30)

    done = stack.sluice("abort", stack.service, "--force", "--reason", "deaf", env=key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert weights(stack) == (100, 0)
    assert execution_status(stack) == "WORKFLOW_EXECUTION_STATUS_TERMINATED"


def test_abort_force_refuses_a_rollout_that_ended_on_its_own(stack: Stack, worker: ManagedProcess) -> None:
    spec = stack.spec([{"set_weight": 100}])
    done = stack.sluice("start", "-f", str(spec), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    refused = force(stack)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "ended on its own" in refused.stderr
    assert weights(stack) == (0, 100)  # promoted, and left there


def test_a_second_rollout_on_the_same_backend_is_refused_whatever_its_service(
    stack: Stack, worker: ManagedProcess
) -> None:
    first = stack.spec([{"set_weight": 10}, {"pause": "10m"}])
    done = stack.sluice("start", "-f", str(first))
    assert done.returncode == 0, done.stdout + done.stderr
    wait_weights(stack, (90, 10))

    other = dict(yaml.safe_load(first.read_text()), service=f"{stack.service}-other", version="v7")
    other_path = first.with_name("other.yaml")
    other_path.write_text(yaml.safe_dump(other))
    refused = stack.sluice("start", "-f", str(other_path))
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert f"rollout-{stack.service}" in refused.stderr and "Nothing was started" in refused.stderr
    assert f"haproxy:{stack.haproxy.admin_socket}#{stack.haproxy.backend}" in refused.stderr
    assert weights(stack) == (90, 10)
    missing = stack.temporal("workflow", "describe", "-w", f"rollout-{stack.service}-other")
    assert missing.returncode != 0  # never started

    aborted = stack.sluice("abort", stack.service, "--reason", "make room")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    wait_until(
        lambda: execution_status(stack) == "WORKFLOW_EXECUTION_STATUS_COMPLETED",
        30,
        what="first rollout ended",
    )
    started = stack.sluice("start", "-f", str(other_path))
    assert started.returncode == 0, started.stdout + started.stderr
    wait_weights(stack, (90, 10))
    assert stack.sluice("abort", other["service"], "--reason", "done").returncode == 0


def test_a_rollout_started_without_the_memo_is_found_through_its_history(
    stack: Stack, worker: ManagedProcess
) -> None:
    # As an older Sluice (or another client) would start it: no `traffic_targets` memo.
    first = stack.spec([{"set_weight": 10}, {"pause": "10m"}])
    spec = yaml.safe_load(first.read_text())
    started = stack.temporal(
        "workflow",
        "start",
        "--type",
        "Rollout",
        "--task-queue",
        "sluice",
        "--workflow-id",
        f"rollout-{stack.service}",
        "--input",
        json.dumps({"spec": spec, "spec_digest": "legacy"}),
    )
    assert started.returncode == 0, started.stderr
    wait_weights(stack, (90, 10))
    other_path = first.with_name("other.yaml")
    other_path.write_text(yaml.safe_dump(dict(spec, service=f"{stack.service}-late")))
    refused = stack.sluice("start", "-f", str(other_path))
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert f"rollout-{stack.service}" in refused.stderr
    assert stack.sluice("abort", stack.service, "--reason", "done").returncode == 0
