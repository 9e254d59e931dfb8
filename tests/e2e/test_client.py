"""`sluice.runtime.client` and `sluice start` on the real stack: dev server, `sluice worker`, HAProxy.

The API is used directly (no CLI) for every verb; the CLI for what a CI job sees: a re-run of
a promoted spec, the same version with another spec, and `start --wait` across a restart of
the Temporal server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from sluice.contracts.status import Phase, RolloutStatus, Weights
from sluice.runtime.client import (
    AnotherRolloutRunning,
    ApprovalRefused,
    NoWorker,
    RolloutNotFound,
    RolloutNotRunning,
    SluiceClient,
    StartOutcome,
    read_spec_file,
)
from tests.e2e.conftest import ROOT, Stack, running_stack
from tests.e2e.test_rollouts import share_of_new_version, status, wait_status
from tests.support.load import LoadGenerator
from tests.support.procs import ManagedProcess
from tests.support.temporal import DevServer, start_dev_server, start_worker

pytestmark = pytest.mark.integration


def haproxy_weights(stack: Stack) -> tuple[int, int]:
    """(stable, canary) as HAProxy itself reports them: the truth, not the workflow's memory."""
    backend = stack.haproxy.backend
    stable = stack.haproxy.command(f"get weight {backend}/stable").split()[0]
    canary = stack.haproxy.command(f"get weight {backend}/canary").split()[0]
    return int(stable), int(canary)


async def until_status(
    read: Callable[[], Awaitable[RolloutStatus]], check: Callable[[RolloutStatus], bool]
) -> RolloutStatus:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            current = await read()
            if check(current):
                return current
        except NoWorker:
            current = None
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"status never matched; last: {current}")
        await asyncio.sleep(0.3)


@pytest.fixture
def api_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`SluiceClient.connect()` reads Temporal's own environment: point it at the stack's server."""
    for key, value in stack.server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", os.devnull)
    yield


async def test_the_api_starts_steers_retries_and_reads_a_rollout(
    stack: Stack, worker: ManagedProcess, api_env: None
) -> None:
    client = await SluiceClient.connect()
    service = stack.service
    spec = read_spec_file(stack.spec([{"set_weight": 10}, {"pause": {}}, {"set_weight": 100}]))
    with pytest.raises(RolloutNotFound):
        await client.status(service)

    first = await client.start(spec, "api-test")
    assert first.outcome == StartOutcome.STARTED and first.workflow_id == f"rollout-{service}"
    attached = await client.start(spec, "api-test")
    assert (attached.outcome, attached.run_id) == (StartOutcome.ATTACHED, first.run_id)
    with pytest.raises(AnotherRolloutRunning) as running:
        await client.start(read_spec_file(stack.spec([{"set_weight": 100}], version="v3")), "api-test")
    assert running.value.running.version == "v2" and running.value.running_digest == spec.digest()

    paused = await until_status(lambda: client.status(service), lambda s: s.phase == Phase.PAUSED)
    assert paused.weights == Weights(stable=90, canary=10)
    with pytest.raises(ApprovalRefused):  # no approval gate waits
        await client.approve(service, "alice", "nothing to approve")
    aborted = await client.signal(service, "abort", "alice", "try again")
    assert aborted.handled
    outcome = await client.wait(service, first.run_id)
    assert outcome.phase == Phase.ABORTED and haproxy_weights(stack) == (100, 0)
    with pytest.raises(RolloutNotRunning):
        await client.signal(service, "resume", "alice", "too late")

    # A retry after an abort runs anew from step 1.
    retry = await client.start(spec, "api-test")
    assert retry.outcome == StartOutcome.STARTED and retry.run_id != first.run_id
    again = await until_status(lambda: client.status(service), lambda s: s.phase == Phase.PAUSED)
    assert again.step_index == 1 and again.actions == []
    resumed = await client.signal(service, "resume", "alice", "10% looks fine")
    assert resumed.handled and resumed.after is not None and resumed.after.actions[-1].by == "alice"
    final = await client.wait(service, retry.run_id)
    assert final.phase == Phase.PROMOTED and final.weights == Weights(stable=0, canary=100)
    assert haproxy_weights(stack) == (0, 100)

    # Re-running the promoted spec touches nothing.
    rerun = await client.start(spec, "ci")
    assert rerun.outcome == StartOutcome.ALREADY_PROMOTED and rerun.run_id == retry.run_id
    assert rerun.status is not None and rerun.status.phase == Phase.PROMOTED
    assert haproxy_weights(stack) == (0, 100)

    record = await client.record(service)
    assert (record.run_id, record.temporal_status, record.version) == (retry.run_id, "completed", "v2")
    deadline = asyncio.get_running_loop().time() + 30
    while len(listed := await client.list_rollouts(service)) < 2:  # the listing lags a little
        assert asyncio.get_running_loop().time() < deadline, listed
        await asyncio.sleep(0.5)
    assert [r.run_id for r in listed] == [retry.run_id, first.run_id]


def test_a_rerun_of_a_promoted_spec_leaves_traffic_on_the_new_version(
    stack: Stack, worker: ManagedProcess
) -> None:
    spec = stack.spec([{"set_weight": 50}, {"pause": "1s"}, {"set_weight": 100}])
    done = stack.sluice("start", "-f", str(spec), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert haproxy_weights(stack) == (0, 100)
    promoted = status(stack)

    with LoadGenerator(stack.haproxy.url, rate=40) as load:
        rerun = stack.sluice("start", "-f", str(spec), "--wait")
        as_json = stack.sluice("start", "-f", str(spec), "--output", "json")
        counts = load.stop()
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "already promoted with this spec" in rerun.stdout and "nothing to do" in rerun.stdout
    assert f"{stack.service} v2: promoted." in rerun.stdout  # --wait prints the final status
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["outcome"] == "already_promoted" and data["status"]["phase"] == "promoted"
    assert counts.by_version.get("v1", 0) == 0 and counts.total > 0, counts
    assert haproxy_weights(stack) == (0, 100)
    assert share_of_new_version(stack) == 1.0

    # The same version with another spec is refused: it would begin by sending users back to v1.
    digest = data["spec_digest"]
    edited = stack.spec([{"set_weight": 20}, {"pause": "1s"}, {"set_weight": 100}])
    refused = stack.sluice("start", "-f", str(edited), "--wait")
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert digest in refused.stderr and "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert haproxy_weights(stack) == (0, 100)
    after = status(stack)  # still the promoted run: nothing was started
    assert (after["spec_digest"], after["started_at"]) == (digest, promoted["started_at"])

    # --force runs it from step 1, but preflight still refuses to start from the promoted split
    # (canary at 100): the operator has to put traffic back on stable first, deliberately.
    forced = stack.sluice("start", "-f", str(edited), "--force", "--output", "json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["outcome"] == "started"
    refused_split = wait_status(stack, lambda s: s["spec_digest"] != digest and s["phase"] == "rolled_back")
    assert "UnexpectedSplit" in refused_split["message"] and not refused_split["traffic_touched"]
    assert haproxy_weights(stack) == (0, 100)

    for server, weight in (("stable", 100), ("canary", 0)):  # moved back by hand
        stack.haproxy.command(f"set weight {stack.haproxy.backend}/{server} {weight}")
    forced = stack.sluice("start", "-f", str(edited), "--force", "--output", "json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["outcome"] == "started"
    final = wait_status(
        stack, lambda s: s["phase"] == "promoted" and s["spec_digest"] != digest and s["traffic_touched"]
    )
    assert final["weights"] == {"stable": 0, "canary": 100}


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[list[DevServer]]:
    """A dev server of this test's own (the shared one must not restart), as a one-item list
    the test replaces after a restart; stopped after."""
    servers = [start_dev_server(tmp_path / "temporal")]
    yield servers
    servers[0].stop()


def test_start_wait_exits_with_the_outcome_across_a_temporal_restart(
    own_server: list[DevServer], tmp_path: Path
) -> None:
    server = own_server[0]
    workers = [start_worker(server, tmp_path / "worker.log")]
    try:
        with running_stack(server, tmp_path, f"restart-{os.getpid() % 10000}") as stack:
            spec = stack.spec([{"set_weight": 20}, {"pause": "8s"}, {"set_weight": 100}])
            waiting = subprocess.Popen(
                [sys.executable, "-m", "sluice", "start", "-f", str(spec), "--wait", "--output", "json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **server.env()},
                cwd=ROOT,
            )
            try:
                wait_status(stack, lambda s: (s.get("weights") or {}).get("canary") == 20)
                server.stop()  # by PID; its SQLite file keeps the rollout
                # Down for longer than the SDK's own retries of a call (about 8 s), as a real restart
                # or upgrade can be: the wait must notice, say so, and carry on.
                time.sleep(15)
                restarted = start_dev_server(tmp_path / "temporal", port=server.port, ui_port=server.ui_port)
                own_server[0] = stack.server = restarted
                if not workers[0].running:  # a worker may give up on a server that vanished
                    workers.append(start_worker(restarted, tmp_path / "worker-2.log"))
                out, err = waiting.communicate(timeout=120)
            finally:
                waiting.kill()
            assert waiting.returncode == 0, out + err
            assert "lost Temporal at" in err and "answers again" in err, err
            assert json.loads(out)["phase"] == "promoted"  # stdout stays one JSON document
            assert haproxy_weights(stack) == (0, 100)
    finally:
        for worker in workers:
            worker.stop()
