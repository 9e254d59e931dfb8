"""Blue/green, presets, post-promotion watch, approval gates and ring rollouts on the time-skipping server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sluice.activities.approvals import ALLOWED_SIGNERS_ENV, verify_approval
from sluice.activities.notify import headline
from sluice.cli.exits import ExitCode, exit_code_for_error
from sluice.contracts import errors
from sluice.contracts.approvals import SIGNATURE_NAMESPACE
from sluice.contracts.calls import (
    AnalyzeInput,
    AnalyzeResult,
    OperatorInput,
    PreflightInput,
    ReadTrafficInput,
    RingRolloutInput,
    RollbackInput,
    RolloutInput,
    SetTrafficInput,
    TrafficState,
)
from sluice.contracts.notify import NotifyInput
from sluice.contracts.spec import RingRolloutSpec, parse_any_spec
from sluice.contracts.status import MetricVerdict, Phase, RolloutStatus, Verdict
from sluice.runtime.client import ApprovalRefused, RefusedAtGate, SluiceClient
from sluice.workflows.rings import RingRolloutWorkflow
from sluice.workflows.rollout import RolloutWorkflow
from tests.workflow.test_rollout_workflow import (
    CANARY,
    METRICS,
    ROUTER,
    FakeRouter,
    _maybe_record,
    make_spec,
    running,
)


async def until(
    handle: WorkflowHandle[Any, RolloutStatus], check: Callable[[RolloutStatus], bool]
) -> RolloutStatus:
    """Poll the status query (real time) until `check` holds; a query that times out while the
    workflow moves to a new run is retried."""
    last: RolloutStatus | None = None
    for _ in range(300):
        try:
            last = await handle.query("status", result_type=RolloutStatus, rpc_timeout=timedelta(seconds=2))
        except RPCError:
            await asyncio.sleep(0.1)
            continue
        if check(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition never held; last status: {last}")


def op(reason: str = "test", by: str = "alice") -> OperatorInput:
    return OperatorInput(reason=reason, by=by)


def spec_with(**extra: Any) -> Any:
    data: dict[str, Any] = {
        "service": "checkout",
        "version": "v2",
        "stable_version": "v1",
        "router": ROUTER,
        "analysis": {"interval": "5s", "metrics": METRICS},
        **extra,
    }
    return parse_any_spec(data)


# --- presets and the canary watch ---------------------------------------------------------------


async def test_linear_preset_runs_its_expanded_steps(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, spec_with(preset="Linear10PercentEvery1Minute"), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert router.weights_set() == list(range(10, 101, 10))


async def test_canary_post_promotion_failure_rolls_back_to_stable(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = spec_with(steps=[{"set_weight": 50}, {"pause": "30s"}, {"set_weight": 100}], post_promotion="10m")
    async with running(env, spec, router) as handle:
        await env.sleep(40)
        watching = await until(handle, lambda s: s.step.startswith("post-promotion watch"))
        router.verdict = Verdict.FAIL
        result = await handle.result()
    assert watching.weights is not None and watching.weights.canary == 100
    assert result.phase is Phase.ROLLED_BACK
    assert router.weights_set() == [50, 100] and router.rollbacks() == 1 and router.canary == 0


async def test_canary_post_promotion_passes_then_promotes(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = spec_with(steps=[{"set_weight": 100}], post_promotion="2m")
    async with running(env, spec, router) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED and router.rollbacks() == 0
    assert result.analysis.ticks >= 20  # the watch kept analysing for 2 minutes


async def test_a_watch_hung_at_its_end_does_not_promote_on_the_pass_before(env: WorkflowEnvironment) -> None:
    # Ticks every 5 s from the shift to 100%; the 30 s watch ends while the tick due at 25 s hangs.
    router = FakeRouter()
    spec = spec_with(steps=[{"set_weight": 100}], post_promotion="30s")
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 100)
        await env.sleep(22)
        await until(handle, lambda s: s.analysis.ticks >= 4)
        router.hang_analysis = True
        await env.sleep(10)
        held = await until(handle, lambda s: "bake over" in s.message)
        router.hang_analysis = False
        router.unhang.set()
        result = await handle.result()
    assert held.phase is Phase.PROGRESSING and "too old" in held.message
    assert result.phase is Phase.PROMOTED
    assert result.verdicts_at is not None and held.verdicts_at is not None
    assert result.verdicts_at > held.verdicts_at


# --- blue/green ---------------------------------------------------------------------------------

PREVIEW = {
    "name": "preview",
    "provider": "http",
    "url": "http://127.0.0.1:1/healthz",
    "min_success_ratio": 1.0,
}


def blue_green(**extra: Any) -> Any:
    return spec_with(
        strategy="blue_green",
        pre_promotion={"duration": "1m", "analysis": {"interval": "5s", "metrics": [PREVIEW]}},
        post_promotion="5m",
        scale_down_delay="30m",
        **extra,
    )


async def test_blue_green_switches_once_and_keeps_blue_for_the_delay(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, blue_green(), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert router.weights_set() == [100]  # no partial weights: green got all at once
    analysed = [w for kind, w in router.calls if kind == "analyze"]
    assert analysed.count(0) >= 10 and analysed.count(100) >= 50  # preview, then the watch
    assert result.keep_stable_until is not None and "scale_down_delay" in result.message


async def test_blue_green_failing_preview_never_sends_user_traffic(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.FAIL)
    async with running(env, blue_green(), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert router.weights_set() == [] and result.traffic_touched is False
    assert "preview" in result.message


async def test_blue_green_failure_in_the_watch_switches_back_to_blue(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, blue_green(), router) as handle:
        await env.sleep(70)
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 100)
        router.verdict = Verdict.FAIL
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert router.weights_set() == [100] and router.calls[-1] == ("rollback", 0)
    assert result.weights is not None and result.weights.stable == 100


async def test_blue_green_cancel_during_the_watch_switches_back(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, blue_green(), router) as handle:
        await env.sleep(70)
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 100)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert router.rollbacks() == 1 and router.canary == 0


# --- approval gates -----------------------------------------------------------------------------

GATE = {"approval": {"approvers": ["alice", "bob"], "timeout": "4h", "on_timeout": "rollback"}}


async def test_approval_gate_rejects_strangers_and_records_the_approver(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = spec_with(steps=[{"set_weight": 10}, GATE, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        waiting = await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("approve", op("lgtm", "mallory"), result_type=RolloutStatus)
        assert "may not approve" in str(refused.value.cause)
        after = await handle.execute_update(
            "approve", op("dashboards green", "bob"), result_type=RolloutStatus
        )
        result = await handle.result()
        history = await handle.fetch_history()
    assert waiting.approval is not None and waiting.approval.approvers == ["alice", "bob"]
    assert waiting.approval.deadline is not None
    assert after.actions[-1].action == "approve" and after.actions[-1].by == "bob"
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 100]
    assert [(a.action, a.by, a.reason) for a in result.actions] == [("approve", "bob", "dashboards green")]
    # The rejected update left nothing in the history; the accepted one is there with who and why.
    updates = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert len(updates) == 1


async def test_approval_by_signal_for_the_web_ui(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = spec_with(steps=[{"set_weight": 10}, GATE, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        await handle.signal("approve", op("too early", "alice"))  # no gate waits yet: refused
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await handle.signal("approve", op("lgtm", "mallory"))
        refused = await until(handle, lambda s: len(s.actions) == 2)
        assert refused.phase is Phase.AWAITING_APPROVAL and router.weights_set() == [10]
        await handle.signal("approve", op("dashboards green", "bob"))
        result = await handle.result()
    first, second = refused.actions
    assert first.action == "approve_refused" and "not waiting for an approval" in first.reason
    assert second.action == "approve_refused" and second.by == "mallory"
    assert "'mallory' may not approve" in second.reason and "their reason: lgtm" in second.reason
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 100]
    assert (result.actions[-1].action, result.actions[-1].by) == ("approve", "bob")


async def test_approval_rejected_when_no_gate_waits(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, make_spec(CANARY), router) as handle:
        await until(handle, lambda s: s.step_index == 1)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("approve", op("x", "alice"), result_type=RolloutStatus)
        await handle.signal("abort", op("done"))
        await handle.result()
    assert "not waiting for an approval" in str(refused.value.cause)


async def test_approval_timeout_rolls_back(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    # 20 minutes, not GATE's 4 h: analysis ticks every 5 s all along, and 4 h of them made this
    # the slowest test by far (and slower still on a loaded machine).
    gate = {"approval": {**GATE["approval"], "timeout": "20m"}}
    spec = spec_with(steps=[{"set_weight": 10}, gate, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK and "approval gate timed out" in result.message
    assert router.rollbacks() == 1 and router.canary == 0
    assert result.actions[-1].action == "approval_timeout" and result.actions[-1].by == "sluice"
    assert (result.finished_at - result.started_at).total_seconds() >= 20 * 60  # type: ignore[operator]


async def test_approval_timeout_can_continue(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    gate = {"approval": {"timeout": "1h", "on_timeout": "continue"}}
    async with running(
        env, spec_with(steps=[{"set_weight": 10}, gate, {"set_weight": 100}]), router
    ) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 100]


async def test_a_timed_out_gate_that_continues_is_no_longer_waited_at(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    gate = {"approval": {"timeout": "30s", "on_timeout": "continue"}}
    spec = spec_with(steps=[{"set_weight": 10}, gate, {"pause": {}}, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await env.sleep(40)
        after = await until(handle, lambda s: s.step_index == 2)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("approve", op("late", "alice"), result_type=RolloutStatus)
        await handle.signal("resume", op("go on"))
        result = await handle.result()
    assert after.phase is Phase.PAUSED and after.approval is None
    assert "not waiting for an approval" in str(refused.value.cause)
    assert result.phase is Phase.PROMOTED and [a.action for a in result.actions] == [
        "approval_timeout",
        "resume",
    ]


async def test_cancel_while_awaiting_approval_rolls_back(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = spec_with(steps=[{"set_weight": 10}, GATE, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert router.rollbacks() == 1 and router.canary == 0


async def test_continue_as_new_at_a_gate_keeps_its_deadline(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = spec_with(steps=[{"set_weight": 10}, GATE, {"set_weight": 100}])
    async with running(env, spec, router, continue_as_new_after_events=150) as handle:
        first = await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await env.sleep(3600)
        later = await until(handle, lambda s: s.continued_as_new >= 2 and s.phase is Phase.AWAITING_APPROVAL)
        await handle.execute_update("approve", op("ok", "alice"), result_type=RolloutStatus)
        result = await handle.result()
    assert first.approval is not None and later.approval is not None
    assert later.approval.deadline == first.approval.deadline
    assert result.phase is Phase.PROMOTED and router.rollbacks() == 0 and router.weights_set() == [10, 100]


# --- gates hold for every verb --------------------------------------------------------------------

GATED = [{"set_weight": 10}, GATE, {"set_weight": 50}, {"pause": "30s"}, {"set_weight": 100}]


async def test_promote_at_a_gate_is_refused_to_a_non_approver_and_accepted_from_an_approver(
    env: WorkflowEnvironment,
) -> None:
    router = FakeRouter()
    async with running(env, spec_with(steps=GATED), router) as handle:
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await handle.signal("promote", op("ship it", "mallory"))
        refused = await until(handle, lambda s: bool(s.actions))
        assert refused.phase is Phase.AWAITING_APPROVAL and router.weights_set() == [10]
        await handle.signal("promote", op("hotfix, approved in the incident channel", "bob"))
        result = await handle.result()
    first = refused.actions[0]
    assert (first.action, first.by, first.verified) == ("promote_refused", "mallory", False)
    assert "'mallory' may not skip it with `promote`" in first.reason and "alice, bob" in first.reason
    assert "sluice approve checkout" in first.reason and "their reason: ship it" in first.reason
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 100]
    assert [(a.action, a.by) for a in result.actions] == [("promote_refused", "mallory"), ("promote", "bob")]
    # The promote that skipped the gate is part of the gate's audit trail, like an approval.
    assert all(a.decides_a_gate and a.gate is not None for a in result.actions)


async def test_resume_at_a_gate_is_refused_with_the_hint_to_approve(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = spec_with(steps=[{"set_weight": 10}, GATE, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await handle.signal("resume", op("go on", "alice"))  # even an approver: resume is not approve
        refused = await until(handle, lambda s: bool(s.actions))
        assert refused.phase is Phase.AWAITING_APPROVAL and router.weights_set() == [10]
        await handle.execute_update("approve", op("dashboards green", "alice"), result_type=RolloutStatus)
        result = await handle.result()
    action = refused.actions[0]
    assert action.action == "resume_refused" and action.by == "alice"
    assert "`resume` does not give" in action.reason and "sluice approve checkout --by NAME" in action.reason
    assert result.phase is Phase.PROMOTED
    assert [a.action for a in result.actions] == ["resume_refused", "approve"]


async def test_abort_by_anyone_at_a_gate_rolls_back(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, spec_with(steps=GATED), router) as handle:
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await handle.signal("abort", op("pager went off", "mallory"))  # stopping needs no approver
        result = await handle.result()
    assert result.phase is Phase.ABORTED and "aborted by mallory" in result.message
    assert router.rollbacks() == 1 and router.canary == 0 and router.weights_set() == [10]


async def test_promote_at_the_gate_between_rings_is_refused_with_the_hint(env: WorkflowEnvironment) -> None:
    rings = Rings("a", "b")
    gate = {"approval": {"approvers": ["alice"]}}
    async with ring_rollout(env, ring_spec("a", "b", ring_extra=[gate]), rings) as handle:
        await env.sleep(40)
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await handle.signal("promote", op("skip ahead", "alice"))
        refused = await until(handle, lambda s: bool(s.actions))
        assert refused.phase is Phase.AWAITING_APPROVAL and rings.routers["b"].calls == []
        await handle.execute_update("approve", op("ring a is fine", "alice"), result_type=RolloutStatus)
        result = await handle.result()
    assert refused.actions[0].action == "promote_refused" and "sluice approve" in refused.actions[0].reason
    assert result.phase is Phase.PROMOTED and rings.routers["b"].canary == 100


async def test_the_cli_refuses_resume_and_a_strangers_promote_at_a_gate_before_sending(
    env: WorkflowEnvironment,
) -> None:
    router = FakeRouter()
    spec = spec_with(steps=GATED, service="gated-cli")
    queue = f"tq-{uuid.uuid4()}"
    client = SluiceClient(env.client, "time-skipping")
    async with Worker(
        env.client, task_queue=queue, workflows=[RolloutWorkflow], activities=router.activities()
    ):
        handle = await env.client.start_workflow(
            RolloutWorkflow.run,
            RolloutInput(spec=spec, spec_digest=spec.digest()),
            id=f"rollout-gated-cli-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
            result_type=RolloutStatus,
        )
        service = handle.id.removeprefix("rollout-")
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        with pytest.raises(RefusedAtGate) as resume:
            await client.signal(service, "resume", "alice", "go on")
        with pytest.raises(RefusedAtGate) as promote:
            await client.signal(service, "promote", "mallory", "ship it")
        untouched = await handle.query("status", result_type=RolloutStatus)
        sent = await client.signal(service, "promote", "bob", "approved in the incident channel")
        result = await handle.result()
    assert not resume.value.sent and "sluice approve" in resume.value.reason
    assert not promote.value.sent and "'mallory' may not skip it" in promote.value.reason
    assert exit_code_for_error(promote.value) is ExitCode.INVALID
    assert untouched.actions == []  # nothing was sent, so nothing was recorded
    assert sent.operator.by == "bob" and result.phase is Phase.PROMOTED


def _ed25519_keys(where: Path, *names: str) -> None:
    for name in names:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(where / name)], check=True)


async def test_a_gate_that_requires_a_signed_approval_takes_only_a_verified_one(
    env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.to_thread(_ed25519_keys, tmp_path, "alice", "mallory")
    kind, key = (tmp_path / "alice.pub").read_text().split()[:2]
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'alice namespaces="{SIGNATURE_NAMESPACE}" {kind} {key}\n')
    monkeypatch.setenv(ALLOWED_SIGNERS_ENV, str(allowed))  # the worker's configuration
    router = FakeRouter()
    gate = {"approval": {"approvers": ["alice"], "require_verified": True, "timeout": "4h"}}
    spec = spec_with(steps=[{"set_weight": 10}, gate, {"set_weight": 100}])
    queue = f"tq-{uuid.uuid4()}"
    client = SluiceClient(env.client, "time-skipping")
    activities = [*router.activities(), verify_approval]
    async with Worker(env.client, task_queue=queue, workflows=[RolloutWorkflow], activities=activities):
        handle = await env.client.start_workflow(
            RolloutWorkflow.run,
            RolloutInput(spec=spec, spec_digest=spec.digest()),
            # Named after the test: the signed statement names the workflow id, and replay
            # (which names the workflow after the history's file) needs the same id.
            id=f"rollout-{os.environ['PYTEST_CURRENT_TEST'].split('::')[-1].split(' ')[0]}",
            task_queue=queue,
            result_type=RolloutStatus,
        )
        service = handle.id.removeprefix("rollout-")
        waiting = await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        # The statement expires by the workflow's clock, which the time-skipping server has moved
        # ahead of this machine's by every earlier test's skipped time: sign for 10 min of it.
        assert waiting.approval is not None
        valid_for = waiting.approval.since - datetime.now(UTC) + timedelta(minutes=10)
        with pytest.raises(ApprovalRefused) as plain:  # a typed --by, even the approver's name
            await client.approve(service, "alice", "lgtm")
        with pytest.raises(RefusedAtGate) as promote:
            await client.signal(service, "promote", "alice", "skip it")
        with pytest.raises(ApprovalRefused) as forged:  # mallory's key, claiming to be alice
            await client.approve(
                service, "alice", "lgtm", sign_with=str(tmp_path / "mallory"), valid_for=valid_for
            )
        approved = await client.approve(
            service, "alice", "dashboards green", sign_with=str(tmp_path / "alice"), valid_for=valid_for
        )
        result = await handle.result()
        await _maybe_record(handle)
        history = (await handle.fetch_history()).to_json()
    assert "requires a signed approval" in plain.value.reason
    assert "requires a signed approval" in promote.value.reason
    assert "does not verify for 'alice'" in forged.value.reason
    assert approved.status.actions[-1].verified
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 100]
    assert [(a.action, a.by, a.verified) for a in result.actions] == [
        ("approve_refused", "alice", False),
        ("approve", "alice", True),
    ]
    assert result.actions[-1].who() == "alice"
    assert "PRIVATE KEY" not in history and key not in history  # only signatures, never a key


@dataclass
class NotifyingRouter(FakeRouter):
    """A FakeRouter whose `notify` holds the `awaiting_approval` webhook until `deliver` is set,
    which holds a continue-as-new at the gate in its handover (the observer's drain)."""

    gate_notified: asyncio.Event = field(default_factory=asyncio.Event)
    deliver: asyncio.Event = field(default_factory=asyncio.Event)
    events: list[NotifyInput] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="notify")
        async def notify(inp: NotifyInput) -> None:
            self.events.append(inp)
            if inp.event.kind == "phase_changed" and inp.event.phase == "awaiting_approval":
                self.gate_notified.set()
                await asyncio.wait_for(self.deliver.wait(), 60)

        return [*super().activities(), notify]


async def test_an_approval_during_the_handover_at_a_gate_passes_it_and_the_analysis_ticks_on(
    env: WorkflowEnvironment,
) -> None:
    router = NotifyingRouter()
    spec = spec_with(steps=GATED, notify=[{"url": "http://127.0.0.1:9/hook"}])
    # The history is already past 15 events at the gate: it hands over at once, and the drain
    # waits for the held `awaiting_approval` webhook while the approval lands.
    async with running(env, spec, router, continue_as_new_after_events=15) as handle:
        await asyncio.wait_for(router.gate_notified.wait(), 30)
        await handle.execute_update("approve", op("dashboards green", "alice"), result_type=RolloutStatus)
        router.deliver.set()
        result = await handle.result()
    approvals = [a for a in result.actions if a.action == "approve"]
    assert [(a.by, a.step_index) for a in approvals] == [("alice", 1)]
    # Passed in the run it landed in: the bake after the gate ended on fresh passing ticks.
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 50, 100]
    ticks_after = [c for c in router.calls if c == ("analyze", 50)]
    assert ticks_after, router.calls
    decisions = [e.event for e in router.events if e.event.kind == "gate_decision"]
    assert decisions and decisions[0].action is not None and decisions[0].action.by == "alice"
    assert "approve by alice (unverified)" in headline(decisions[0])


# --- rings --------------------------------------------------------------------------------------


class Rings:
    """One FakeRouter per ring, chosen by the HAProxy backend the activity is called with."""

    def __init__(self, *names: str) -> None:
        self.routers = {n: FakeRouter() for n in names}
        self.order: list[tuple[str, str, int]] = []
        self.events: list[tuple[str, str]] = []
        """(sending workflow id, phase) of every `phase_changed` notification."""
        self.headlines: list[str] = []

    def _of(self, router: Any) -> tuple[str, FakeRouter]:
        name = router.backend.removeprefix("be_")
        return name, self.routers[name]

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="preflight")
        async def preflight(inp: PreflightInput) -> TrafficState:
            return self._of(inp.router)[1].state()

        @activity.defn(name="set_traffic")
        async def set_traffic(inp: SetTrafficInput) -> TrafficState:
            name, r = self._of(inp.router)
            r.canary = inp.canary_weight
            r.calls.append(("set_traffic", inp.canary_weight))
            self.order.append((name, "set", inp.canary_weight))
            return r.state()

        @activity.defn(name="rollback_traffic")
        async def rollback_traffic(inp: RollbackInput) -> TrafficState:
            name, r = self._of(inp.router)
            if r.rollback_fatal or r.rollback_failures > 0:
                self.order.append((name, "rollback_failed", r.canary))
                if r.rollback_fatal:
                    raise ApplicationError("No such server", type=errors.ROUTER_CONFIG, non_retryable=True)
                r.rollback_failures -= 1
                raise ApplicationError("socket refused", type=errors.ROUTER_UNREACHABLE)
            r.canary = 0
            r.calls.append(("rollback", 0))
            self.order.append((name, "rollback", 0))
            return r.state()

        @activity.defn(name="analyze")
        async def analyze(inp: AnalyzeInput) -> AnalyzeResult:
            _, r = self._of(inp.router)
            v = r.verdict
            at = datetime.now(UTC)
            return AnalyzeResult(
                verdicts=[
                    MetricVerdict(metric=m.name, verdict=v, detail=f"stubbed {v.value}", at=at)
                    for m in inp.metrics
                ]
            )

        @activity.defn(name="read_traffic")
        async def read_traffic(inp: ReadTrafficInput) -> TrafficState:
            _, r = self._of(inp.router)
            return r.state()

        @activity.defn(name="notify")
        async def notify(inp: NotifyInput) -> None:
            if inp.event.kind == "phase_changed":
                self.events.append((inp.event.event_id.split("/")[0], inp.event.phase))
                self.headlines.append(headline(inp.event))

        return [preflight, set_traffic, rollback_traffic, read_traffic, analyze, notify]


def ring_spec(*names: str, **extra: Any) -> RingRolloutSpec:
    rings = [{"name": n, "router": {**ROUTER, "backend": f"be_{n}"}} for n in names]
    for ring, more in zip(rings, extra.pop("ring_extra", []), strict=False):
        ring.update(more)
    spec = parse_any_spec(
        {
            "service": "checkout",
            "version": "v2",
            "stable_version": "v1",
            "steps": [{"set_weight": 10}, {"pause": "30s"}, {"set_weight": 100}],
            "analysis": {"interval": "5s", "metrics": METRICS},
            "rings": rings,
            **extra,
        }
    )
    assert isinstance(spec, RingRolloutSpec)
    return spec


@asynccontextmanager
async def ring_rollout(
    env: WorkflowEnvironment,
    spec: RingRolloutSpec,
    rings: Rings,
    continue_as_new_after_events: int | None = None,
) -> AsyncIterator[WorkflowHandle[Any, RolloutStatus]]:
    queue = f"tq-{uuid.uuid4()}"
    test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0]
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[RolloutWorkflow, RingRolloutWorkflow],
        activities=rings.activities(),
    ):
        handle: WorkflowHandle[Any, RolloutStatus] = await env.client.start_workflow(
            RingRolloutWorkflow.run,
            RingRolloutInput(
                spec=spec,
                spec_digest=spec.digest(),
                continue_as_new_after_events=continue_as_new_after_events,
            ),
            # Named after the test: ring ids derive from it, and replay needs the same ids.
            id=f"rollout-{test}",
            task_queue=queue,
            result_type=RolloutStatus,
        )
        yield handle
        target = os.environ.get("SLUICE_RECORD_HISTORIES")
        if target:
            Path(target, f"{test}.json").write_text((await handle.fetch_history()).to_json())
            status = await handle.query("status", result_type=RolloutStatus)
            for ring in status.rings:
                if ring.phase != "pending":
                    child = env.client.get_workflow_handle(ring.workflow_id)
                    Path(target, f"{test}--ring-{ring.name}.json").write_text(
                        (await child.fetch_history()).to_json()
                    )


async def test_rings_roll_out_in_order(env: WorkflowEnvironment) -> None:
    rings = Rings("canary", "eu")
    async with ring_rollout(env, ring_spec("canary", "eu"), rings) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert rings.order == [
        ("canary", "set", 10),
        ("canary", "set", 100),
        ("eu", "set", 10),
        ("eu", "set", 100),
    ]
    assert [(r.name, r.phase) for r in result.rings] == [("canary", Phase.PROMOTED), ("eu", Phase.PROMOTED)]


async def test_a_failing_ring_rolls_back_itself_then_earlier_rings_in_reverse(
    env: WorkflowEnvironment,
) -> None:
    rings = Rings("a", "b", "c")
    rings.routers["c"].verdict = Verdict.FAIL
    async with ring_rollout(env, ring_spec("a", "b", "c"), rings) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    rollbacks = [name for name, what, _ in rings.order if what == "rollback"]
    assert rollbacks == ["c", "b", "a"]  # the failing ring itself, then the saga, newest first
    assert all(r.canary == 0 for r in rings.routers.values())
    assert [r.phase for r in result.rings] == [Phase.ROLLED_BACK] * 3
    assert "ring c" in result.message and "reverse order" in result.message


async def test_a_ring_rollout_notifies_for_itself_and_each_ring(env: WorkflowEnvironment) -> None:
    rings = Rings("a", "b")
    rings.routers["b"].verdict = Verdict.FAIL
    spec = ring_spec("a", "b", notify=[{"url": "http://127.0.0.1:9/hook"}])
    async with ring_rollout(env, spec, rings) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    parent = handle.id
    by_sender: dict[str, list[str]] = {}
    for sender, phase in rings.events:
        by_sender.setdefault(sender, []).append(phase)
    # The whole: started, the saga rolling back, the outcome (the ring a rolled back by the saga
    # is told here, since its own rollout had already ended promoted).
    assert by_sender[parent] == ["progressing", "rolling_back", "rolled_back"]
    assert by_sender[f"{parent}-ring-a"] == ["progressing", "promoted"]
    assert by_sender[f"{parent}-ring-b"] == ["progressing", "rolling_back", "rolled_back"]
    # Chat messages say which ring; the whole has no ring.
    assert "checkout (ring b) v1 → v2: rolled back" in rings.headlines
    assert "checkout v1 → v2: rolled back" in rings.headlines


async def test_earlier_rings_can_stay(env: WorkflowEnvironment) -> None:
    rings = Rings("a", "b")
    rings.routers["b"].verdict = Verdict.FAIL
    async with ring_rollout(env, ring_spec("a", "b", earlier_rings_on_failure="stay"), rings) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert rings.routers["a"].canary == 100 and rings.routers["b"].canary == 0
    assert "stay on the new version" in result.message


async def test_gate_between_rings_then_abort_rolls_back_the_first(env: WorkflowEnvironment) -> None:
    rings = Rings("a", "b")
    gate = {"approval": {"approvers": ["alice"], "timeout": "4h"}}
    async with ring_rollout(env, ring_spec("a", "b", ring_extra=[gate]), rings) as handle:
        await env.sleep(40)
        waiting = await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("approve", op("go", "bob"), result_type=RolloutStatus)
        await handle.signal("abort", op("bad numbers in ring a", "carol"))
        result = await handle.result()
    assert waiting.rings[0].phase is Phase.PROMOTED and waiting.rings[1].phase == "pending"
    assert result.phase is Phase.ABORTED
    assert rings.routers["a"].canary == 0 and rings.routers["b"].calls == []


async def test_gate_between_rings_approved_continues(env: WorkflowEnvironment) -> None:
    rings = Rings("a", "b")
    gate = {"approval": {"approvers": ["alice"]}}
    async with ring_rollout(env, ring_spec("a", "b", ring_extra=[gate]), rings) as handle:
        await env.sleep(40)
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await handle.execute_update("approve", op("ring a is fine", "alice"), result_type=RolloutStatus)
        result = await handle.result()
    assert result.phase is Phase.PROMOTED and rings.routers["b"].canary == 100
    assert result.actions[-1].action == "approve" and result.actions[-1].by == "alice"


async def test_gate_between_rings_approved_by_signal(env: WorkflowEnvironment) -> None:
    rings = Rings("a", "b")
    gate = {"approval": {"approvers": ["alice"]}}
    async with ring_rollout(env, ring_spec("a", "b", ring_extra=[gate]), rings) as handle:
        await env.sleep(40)
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await handle.signal("approve", op("looks fine to me", "bob"))
        refused = await until(handle, lambda s: bool(s.actions))
        assert refused.phase is Phase.AWAITING_APPROVAL and refused.actions[-1].action == "approve_refused"
        await handle.signal("approve", op("ring a is fine", "alice"))
        result = await handle.result()
    assert result.phase is Phase.PROMOTED and rings.routers["b"].canary == 100
    assert [(a.action, a.by) for a in result.actions] == [("approve_refused", "bob"), ("approve", "alice")]


async def test_approve_signal_reaches_the_running_rings_step_gate(env: WorkflowEnvironment) -> None:
    rings = Rings("a")
    spec = ring_spec(
        "a", steps=[{"set_weight": 10}, {"approval": {"approvers": ["alice"]}}, {"set_weight": 100}]
    )
    async with ring_rollout(env, spec, rings) as handle:
        parent = await until(handle, lambda s: s.rings[0].workflow_id is not None)
        child: WorkflowHandle[Any, RolloutStatus] = env.client.get_workflow_handle(
            parent.rings[0].workflow_id, result_type=RolloutStatus
        )
        waiting: RolloutStatus | None = None
        for _ in range(100):  # until the child rollout waits at its gate
            with contextlib.suppress(RPCError):
                waiting = await child.query("status", result_type=RolloutStatus)
                if waiting.approval is not None:
                    break
            await asyncio.sleep(0.05)
        assert waiting is not None and waiting.phase is Phase.AWAITING_APPROVAL
        await handle.signal("approve", op("ring a may go on", "alice"))
        result = await handle.result()
    assert result.phase is Phase.PROMOTED and rings.routers["a"].canary == 100
    assert result.rings[0].phase is Phase.PROMOTED


async def test_cancel_while_a_ring_runs_rolls_back_it_and_the_earlier_ones(env: WorkflowEnvironment) -> None:
    rings = Rings("a", "b")
    spec = ring_spec("a", "b")
    async with ring_rollout(env, spec, rings) as handle:
        await env.sleep(40)
        await until(handle, lambda s: s.rings[1].phase is Phase.PROGRESSING)
        for _ in range(100):
            if rings.routers["b"].canary == 10:
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert [n for n, what, _ in rings.order if what == "rollback"] == ["b", "a"]


async def test_ring_parent_continues_as_new_at_a_gate_and_keeps_every_ring(env: WorkflowEnvironment) -> None:
    rings = Rings("a", "b")
    gate = {"approval": {"approvers": ["alice"], "timeout": "10h"}}
    async with ring_rollout(
        env, ring_spec("a", "b", ring_extra=[gate]), rings, continue_as_new_after_events=12
    ) as handle:
        await env.sleep(40)
        await until(handle, lambda s: s.phase is Phase.AWAITING_APPROVAL)
        await env.sleep(7200)
        held = await until(handle, lambda s: s.continued_as_new >= 1 and s.phase is Phase.AWAITING_APPROVAL)
        await handle.signal("abort", op("changed our minds", "dana"))
        result = await handle.result()
    assert held.rings[0].phase is Phase.PROMOTED and held.approval is not None
    assert (
        held.approval.deadline is not None
        and (held.approval.deadline - held.approval.since).total_seconds() == 36000
    )
    assert result.phase is Phase.ABORTED and rings.routers["a"].canary == 0
    # No rollback happened at the run boundary: exactly one, from the abort.
    assert [n for n, what, _ in rings.order if what == "rollback"] == ["a"]


async def test_a_stuck_saga_rollback_is_reported_then_completes(env: WorkflowEnvironment) -> None:
    rings = Rings("a", "b")
    rings.routers["b"].verdict = Verdict.FAIL
    rings.routers["a"].rollback_failures = 10**6  # the router of ring a refuses until released
    async with ring_rollout(env, ring_spec("a", "b"), rings) as handle:
        await env.sleep(60)  # ring a promoted, ring b fails its first tick and rolls itself back
        stuck = await until(handle, lambda s: "STUCK" in s.message and s.rollback is not None)
        rings.routers["a"].rollback_failures = 0
        result = await handle.result()
    # While stuck: loud in the message, in ring a's own line, and in the rollback record.
    assert stuck.phase is Phase.ROLLING_BACK and "ring a" in stuck.message
    assert stuck.rings[0].phase is Phase.ROLLING_BACK and "ROLLBACK STUCK" in stuck.rings[0].message
    assert stuck.rollback is not None and stuck.rollback.last_error is not None
    assert "socket refused" in stuck.rollback.last_error and stuck.rollback.attempts >= 5
    # Then it completes: every ring back on stable, verified.
    assert result.phase is Phase.ROLLED_BACK and "reverse order" in result.message
    assert all(r.canary == 0 for r in rings.routers.values())
    assert [r.phase for r in result.rings] == [Phase.ROLLED_BACK] * 2
    assert result.rollback is not None and result.rollback.verified_at is not None
    assert result.rollback.attempts > stuck.rollback.attempts


async def test_a_saga_rollback_that_fails_for_good_fails_the_ring_rollout_loudly(
    env: WorkflowEnvironment,
) -> None:
    rings = Rings("a", "b", "c")
    rings.routers["c"].verdict = Verdict.FAIL
    rings.routers["b"].rollback_fatal = True  # ring b's router refuses for good (RouterConfig)
    async with ring_rollout(env, ring_spec("a", "b", "c"), rings) as handle:
        try:
            with pytest.raises(WorkflowFailureError) as failure:
                await asyncio.wait_for(handle.result(), 60)
        finally:
            with contextlib.suppress(RPCError):
                await handle.terminate("the test gave up waiting")
        status = await handle.query("status", result_type=RolloutStatus)
        history = await handle.fetch_history()
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "RollbackFailed" and failure.value.cause.non_retryable
    # One attempt at ring b (non-retryable), then ring a is still rolled back: nothing is left
    # on the new version that could be put back.
    assert [(n, what) for n, what, _ in rings.order if what.startswith("rollback")] == [
        ("c", "rollback"),
        ("b", "rollback_failed"),
        ("a", "rollback"),
    ]
    assert (rings.routers["a"].canary, rings.routers["b"].canary, rings.routers["c"].canary) == (0, 100, 0)
    # The final status says which rings are where.
    assert status.phase is Phase.FAILED and "ROLLBACK FAILED" in status.message
    assert "still on the new version: b" in status.message
    assert "back on stable: a, c" in status.message
    assert [r.phase for r in status.rings] == [Phase.ROLLED_BACK, Phase.FAILED, Phase.ROLLED_BACK]
    assert "No such server" in status.rings[1].message
    # History stays bounded: one rollback activity per earlier ring, no rescheduling loop.
    scheduled = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "rollback_traffic"
    ]
    assert len(scheduled) == 2 and len(history.events) < 120
