"""`abort --force` without a server: what it touches, in which order, and when it refuses.

Temporal and the routers are stand-ins that record every call in one list, so each test
reads as the sequence the break glass performed (the real thing runs in
tests/e2e/test_breakglass.py against HAProxy and a dev server).
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio import exceptions as temporal_errors
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from sluice.cli.exits import ExitCode, exit_code_for_error
from sluice.contracts import errors
from sluice.contracts.calls import TrafficState
from sluice.contracts.spec import HAProxyRouter
from sluice.contracts.status import Phase, RolloutStatus
from sluice.runtime import breakglass
from sluice.runtime import client as client_module
from sluice.runtime.breakglass import RouterUnreachable, TrafficNotVerified, WorkflowNotEnded, force_abort
from sluice.runtime.client import RolloutNotRunning
from sluice.runtime.history import RunRouter, StartedWith
from tests.unit.test_client import NOW

Calls = list[str]


def state(canary: int) -> TrafficState:
    return TrafficState(stable_weight=100 - canary, canary_weight=canary, detail=f"canary={canary}")


class FakeRouter:
    """A router at `canary` percent; `unreachable` fails every call, `stuck` never applies."""

    def __init__(self, name: str, calls: Calls, canary: int, **faults: bool) -> None:
        self.name, self.calls, self.canary, self.faults = name, calls, canary, faults

    def _call(self, what: str) -> None:
        self.calls.append(f"{what} {self.name}")
        if self.faults.get("unreachable"):
            raise ApplicationError(f"{self.name} does not answer", type=errors.ROUTER_UNREACHABLE)

    async def preflight(self) -> TrafficState:
        self._call("preflight")
        if self.canary:
            raise ApplicationError("not all on stable", type=errors.UNEXPECTED_SPLIT, non_retryable=True)
        return state(0)

    async def read_weights(self) -> TrafficState:
        self._call("read")
        if self.faults.get("moves_back"):  # an activity still in flight lands after the terminate
            self.faults["moves_back"], self.canary = False, 50
        return state(self.canary)

    async def set_weights(self, canary_weight: int) -> TrafficState:
        self._call(f"set{canary_weight}")
        if not self.faults.get("stuck"):
            self.canary = canary_weight
        return state(self.canary)


class FakeHandle:
    final_phase = Phase.PROMOTED
    """The phase a completed run's result has."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def result(self, **kwargs: Any) -> RolloutStatus:
        return RolloutStatus(
            service="checkout",
            version="v2",
            spec_digest="d",
            phase=self.final_phase,
            message="",
            step_index=0,
            step_count=1,
            step="",
            started_at=NOW,
        )

    async def signal(self, name: str, arg: Any, **kwargs: Any) -> None:
        self.calls.append(f"signal {name} by {arg.by}: {arg.reason}")

    async def terminate(self, reason: str | None = None, **kwargs: Any) -> None:
        self.calls.append(f"terminate: {reason}")


class FakeClient:
    def __init__(self, calls: Calls) -> None:
        self.temporal = type("Temporal", (), {"get_workflow_handle": lambda _, *a, **k: FakeHandle(calls)})()


class Description:
    def __init__(self, status: WorkflowExecutionStatus, workflow_type: str = "RingRollout") -> None:
        self.id, self.run_id, self.status, self.workflow_type = (
            "rollout-checkout",
            "r1",
            status,
            workflow_type,
        )
        self.start_time = NOW
        self.close_time = None if status == WorkflowExecutionStatus.RUNNING else NOW
        self.typed_search_attributes = TypedSearchAttributes.empty


HAPROXY = HAProxyRouter.model_validate(
    {"type": "haproxy", "admin_socket": "/s", "backend": "be", "stable_server": "a", "canary_server": "b"}
)


def rigged(monkeypatch: pytest.MonkeyPatch, calls: Calls, *routers: FakeRouter) -> None:
    """A ring rollout whose rings' routers are `routers`."""
    by_ring = {f"ring-{r.name}": r for r in routers}

    async def read(temporal: Any, workflow_id: str, run_id: str, workflow_type: str) -> StartedWith:
        calls.append("history")
        return StartedWith(
            workflow_id, run_id, "checkout", "v2", [RunRouter(name, HAPROXY) for name in by_ring]
        )

    rings = iter(by_ring.values())
    monkeypatch.setattr(breakglass, "started_with", read)
    monkeypatch.setattr(breakglass, "router_for", lambda spec: next(rings))
    monkeypatch.setattr(breakglass, "APPLY_ATTEMPTS", 1)


async def run(calls: Calls, status: WorkflowExecutionStatus = WorkflowExecutionStatus.RUNNING) -> Any:
    return await force_abort(FakeClient(calls), Description(status), "alice", "stuck")  # type: ignore[arg-type]


async def test_every_ring_is_put_on_stable_between_the_signal_and_the_terminate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: Calls = []
    rigged(monkeypatch, calls, FakeRouter("eu", calls, 100), FakeRouter("us", calls, 30))
    forced = await run(calls)
    assert calls[:5] == ["history", "preflight eu", "preflight us", "read eu", "read us"]
    assert calls[5] == "signal abort by alice: sluice abort --force: stuck"
    assert calls[6:8] == ["set0 eu", "set0 us"]
    assert calls[8].startswith("terminate: sluice abort --force by alice: 100% stable applied by the CLI")
    assert "ring ring-eu: " in calls[8] and "ring ring-us: " in calls[8] and "Reason: stuck" in calls[8]
    assert calls[9:] == ["read eu", "read us"]  # and read once more after the terminate
    assert forced.terminated and forced.signalled and forced.moved_after_terminate == []
    assert [(s.before.canary_weight, s.after.canary_weight) for s in forced.routers] == [(100, 0), (30, 0)]


async def test_one_unreachable_router_refuses_everything_and_touches_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: Calls = []
    rigged(monkeypatch, calls, FakeRouter("eu", calls, 30), FakeRouter("us", calls, 30, unreachable=True))
    with pytest.raises(RouterUnreachable) as caught:
        await run(calls)
    assert not [c for c in calls if c.startswith(("set", "signal", "terminate"))]
    assert "us does not answer" in caught.value.message and "Nothing was touched" in caught.value.message
    assert exit_code_for_error(caught.value) == ExitCode.UNAVAILABLE


async def test_a_split_that_does_not_read_back_leaves_the_workflow_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: Calls = []
    rigged(monkeypatch, calls, FakeRouter("eu", calls, 30, stuck=True))
    with pytest.raises(TrafficNotVerified, match="left running"):
        await run(calls)
    assert not [c for c in calls if c.startswith("terminate")]


async def test_a_split_moved_by_a_late_activity_after_the_terminate_is_set_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: Calls = []
    router = FakeRouter("eu", calls, 30)
    rigged(monkeypatch, calls, router)
    router.faults["moves_back"] = False
    original = FakeHandle.terminate

    async def terminate_then_move(self: FakeHandle, reason: str | None = None, **kwargs: Any) -> None:
        await original(self, reason)
        router.faults["moves_back"] = True

    monkeypatch.setattr(FakeHandle, "terminate", terminate_then_move)
    forced = await run(calls)
    assert calls[-2:] == ["read eu", "set0 eu"]
    assert forced.moved_after_terminate == ["ring ring-eu: " + HAPROXY.describe()]
    assert forced.routers[0].verified


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        (WorkflowExecutionStatus.COMPLETED, Phase.PROMOTED),
        (WorkflowExecutionStatus.COMPLETED, Phase.ROLLED_BACK),
        (WorkflowExecutionStatus.COMPLETED, Phase.ABORTED),
        (WorkflowExecutionStatus.CANCELED, Phase.PROMOTED),
    ],
)
async def test_a_rollout_that_ended_on_its_own_is_refused(
    monkeypatch: pytest.MonkeyPatch, status: WorkflowExecutionStatus, phase: Phase
) -> None:
    calls: Calls = []
    rigged(monkeypatch, calls, FakeRouter("eu", calls, 100))
    monkeypatch.setattr(FakeHandle, "final_phase", phase)
    with pytest.raises(RolloutNotRunning, match="ended on its own"):
        await run(calls, status)
    assert calls == []


async def test_a_ring_rollout_completed_as_failed_is_not_verified_so_it_acts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A ring whose rollback could not complete: the ring rollout completes in phase `failed`.
    calls: Calls = []
    rigged(monkeypatch, calls, FakeRouter("eu", calls, 40))
    monkeypatch.setattr(FakeHandle, "final_phase", Phase.FAILED)
    forced = await run(calls, WorkflowExecutionStatus.COMPLETED)
    assert "set0 eu" in calls and not [c for c in calls if c.startswith(("signal", "terminate"))]
    assert forced.temporal_status == "completed" and forced.routers[0].verified


async def test_a_terminated_rollout_gets_stable_but_nothing_recorded_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: Calls = []
    rigged(monkeypatch, calls, FakeRouter("eu", calls, 30))
    forced = await run(calls, WorkflowExecutionStatus.TERMINATED)
    assert "set0 eu" in calls and not [c for c in calls if c.startswith(("signal", "terminate"))]
    assert forced.temporal_status == "terminated" and not forced.terminated


def test_a_rollout_ended_by_the_break_glass_exits_as_aborted_for_whoever_waited() -> None:
    reason = "sluice abort --force by alice: 100% stable applied by the CLI and verified: ..."
    failure = WorkflowFailureError(cause=temporal_errors.TerminatedError(reason))
    ended = client_module._ended_without_result("rollout-checkout", failure, None)
    assert ended.how == "force_aborted" and f"was ended by {reason}" in ended.message
    assert exit_code_for_error(ended) == ExitCode.ABORTED
    plain = WorkflowFailureError(cause=temporal_errors.TerminatedError("by hand"))
    assert exit_code_for_error(client_module._ended_without_result("w", plain, None)) == ExitCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "ends"),
    [(RPCStatusCode.NOT_FOUND, "ok"), (RPCStatusCode.PERMISSION_DENIED, "WorkflowNotEnded")],
    ids=["closed-meanwhile", "refused"],
)
async def test_a_terminate_that_fails_after_stable_is_verified(
    monkeypatch: pytest.MonkeyPatch, status: RPCStatusCode, ends: str
) -> None:
    calls: Calls = []
    rigged(monkeypatch, calls, FakeRouter("eu", calls, 30))

    async def refuse(self: FakeHandle, reason: str | None = None, **kwargs: Any) -> None:
        raise RPCError("no", status, b"")

    monkeypatch.setattr(FakeHandle, "terminate", refuse)
    if ends == "ok":  # its own rollback (from our abort signal) ended it first: fine
        forced = await run(calls)
        assert not forced.terminated and forced.terminate_error == "it had already closed"
        return
    with pytest.raises(WorkflowNotEnded) as caught:
        await run(calls)
    assert "100% stable is applied and read back" in caught.value.message
    assert "temporal workflow terminate --workflow-id rollout-checkout" in caught.value.message
    assert exit_code_for_error(caught.value) == ExitCode.UNAVAILABLE
