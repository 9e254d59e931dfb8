"""Rollout workflow logic on the time-skipping server, with activities stubbed by name."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sluice.contracts import errors
from sluice.contracts.calls import (
    AnalyzeInput,
    AnalyzeResult,
    OperatorInput,
    PreflightInput,
    ReadTrafficInput,
    RollbackInput,
    RolloutInput,
    ServerCounters,
    SetTrafficInput,
    TrafficState,
)
from sluice.contracts.spec import RolloutSpec, parse_spec
from sluice.contracts.status import MetricVerdict, Phase, RolloutStatus, Verdict
from sluice.workflows.rollout import RolloutWorkflow

ROUTER = {
    "type": "haproxy",
    "admin_socket": "/tmp/none.sock",
    "backend": "be_checkout",
    "stable_server": "stable",
    "canary_server": "canary",
}
METRICS = [{"name": "canary-5xx", "provider": "haproxy", "max": 0.01, "min_requests": 20}]


def make_spec(steps: list[dict[str, Any]], **analysis: Any) -> RolloutSpec:
    return parse_spec(
        {
            "service": "checkout",
            "version": "v2",
            "stable_version": "v1",
            "router": ROUTER,
            "steps": steps,
            "analysis": {"interval": "5s", "metrics": METRICS, **analysis},
        }
    )


CANARY = [
    {"set_weight": 10},
    {"pause": "30s"},
    {"set_weight": 50},
    {"pause": "1m"},
    {"set_weight": 100},
]


@dataclass
class FakeRouter:
    """Stands in for HAProxy: records every call, can fail, block or judge on demand."""

    canary: int = 0
    calls: list[tuple[str, int]] = field(default_factory=list)
    verdict: Verdict = Verdict.PASS
    fail_set_at: int | None = None
    preflight_error: str | None = None
    rollback_failures: int = 0
    rollback_fatal: bool = False
    block_at: int | None = None
    hang_analysis: bool = False
    """While set, `analyze` hangs (a provider that stopped answering) until `unhang` is set."""
    unhang: asyncio.Event = field(default_factory=asyncio.Event)
    hold_rollback: bool = False
    """While set, `rollback_traffic` waits for `release` (a rollback that takes its time)."""
    reads_weights: bool = True
    lose_a_tick: bool = False
    """The next `analyze` hangs without heartbeating, as on a worker that died mid-tick."""
    """`analyze` returns the split it reads, as the real activity does."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    blocked: asyncio.Event = field(default_factory=asyncio.Event)

    def state(self) -> TrafficState:
        return TrafficState(
            stable_weight=100 - self.canary,
            canary_weight=self.canary,
            canary_counters=ServerCounters(responses=0, errors_5xx=0),
        )

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="preflight")
        async def preflight(inp: PreflightInput) -> TrafficState:
            self.calls.append(("preflight", -1))
            if self.preflight_error:
                raise ApplicationError(self.preflight_error, type=errors.ROUTER_CONFIG, non_retryable=True)
            return self.state()

        @activity.defn(name="set_traffic")
        async def set_traffic(inp: SetTrafficInput) -> TrafficState:
            if inp.canary_weight == self.block_at:
                self.blocked.set()
                await self.release.wait()
            if inp.canary_weight == self.fail_set_at:
                self.calls.append(("set_traffic_failed", inp.canary_weight))
                raise ApplicationError(
                    "server canary is in maintenance",
                    type=errors.ROUTER_REJECTED,
                    non_retryable=True,
                )
            self.canary = inp.canary_weight
            self.calls.append(("set_traffic", inp.canary_weight))
            return self.state()

        @activity.defn(name="rollback_traffic")
        async def rollback_traffic(inp: RollbackInput) -> TrafficState:
            if self.hold_rollback:
                self.blocked.set()
                await self.release.wait()
            if self.rollback_fatal:
                self.calls.append(("rollback_failed", 0))
                raise ApplicationError("No such server", type=errors.ROUTER_CONFIG, non_retryable=True)
            if self.rollback_failures > 0:
                self.rollback_failures -= 1
                self.calls.append(("rollback_failed", 0))
                raise ApplicationError("socket refused", type=errors.ROUTER_UNREACHABLE)
            self.canary = 0
            self.calls.append(("rollback", 0))
            return self.state().model_copy(update={"attempt": activity.info().attempt})

        @activity.defn(name="read_traffic")
        async def read_traffic(inp: ReadTrafficInput) -> TrafficState:
            self.calls.append(("read_traffic", self.canary))
            return self.state()

        @activity.defn(name="analyze")
        async def analyze(inp: AnalyzeInput) -> AnalyzeResult:
            self.calls.append(("analyze", self.canary))
            if self.lose_a_tick:
                self.lose_a_tick = False
                await asyncio.sleep(3600)
            if self.hang_analysis:
                await asyncio.wait_for(self.unhang.wait(), 120)
            return AnalyzeResult(
                verdicts=[
                    MetricVerdict(
                        metric=m.name,
                        verdict=self.verdict,
                        value=0.5 if self.verdict is Verdict.FAIL else 0.0,
                        bound="<= 0.01",
                        detail=f"stubbed {self.verdict.value}",
                        counts={"requests": 100},
                        at=datetime.now(UTC),
                    )
                    for m in inp.metrics
                ],
                weights=self.state() if self.reads_weights else None,
            )

        return [preflight, set_traffic, rollback_traffic, read_traffic, analyze]

    def weights_set(self) -> list[int]:
        return [w for kind, w in self.calls if kind == "set_traffic"]

    def rollbacks(self) -> int:
        return sum(1 for kind, _ in self.calls if kind == "rollback")


@asynccontextmanager
async def running(
    env: WorkflowEnvironment,
    spec: RolloutSpec,
    router: FakeRouter,
    workflow_cls: type = RolloutWorkflow,
    continue_as_new_after_events: int | None = None,
) -> AsyncIterator[WorkflowHandle[Any, RolloutStatus]]:
    queue = f"tq-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[workflow_cls], activities=router.activities()):
        handle: WorkflowHandle[Any, RolloutStatus] = await env.client.start_workflow(
            workflow_cls.run,  # type: ignore[attr-defined]
            RolloutInput(
                spec=spec,
                spec_digest=spec.digest(),
                continue_as_new_after_events=continue_as_new_after_events,
            ),
            id=f"rollout-{uuid.uuid4()}",
            task_queue=queue,
            result_type=RolloutStatus,
        )
        yield handle
        await _maybe_record(handle)


async def _maybe_record(handle: WorkflowHandle[Any, RolloutStatus]) -> None:
    """With SLUICE_RECORD_HISTORIES=dir, save this test's history for the replay test."""
    target = os.environ.get("SLUICE_RECORD_HISTORIES")
    if not target:
        return
    test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0]
    history = await handle.fetch_history()
    Path(target, f"{test}.json").write_text(history.to_json())


async def status_of(handle: WorkflowHandle[Any, RolloutStatus]) -> RolloutStatus:
    return await handle.query("status", result_type=RolloutStatus)


async def until(
    handle: WorkflowHandle[Any, RolloutStatus], check: Callable[[RolloutStatus], bool]
) -> RolloutStatus:
    """Poll the status query (real time, no skipping) until `check` holds, for at least 30 s.

    Time only skips while a test awaits a result or `env.sleep`: a condition that needs
    workflow time to pass (timers, analysis ticks) should be preceded by `env.sleep`.
    """
    for _ in range(600):
        status = await status_of(handle)
        if check(status):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition never held; last status: {status}")


def op(reason: str = "test", by: str = "alice") -> OperatorInput:
    return OperatorInput(reason=reason, by=by)


async def test_happy_path_promotes_with_every_weight_applied(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, make_spec(CANARY), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert router.weights_set() == [10, 50, 100]
    assert router.rollbacks() == 0
    assert result.weights is not None and result.weights.canary == 100
    # Analysis ran from the first weight > 0: 90 s of steps at a 5 s interval.
    assert result.analysis.ticks >= 15
    assert result.verdicts and result.verdicts[0].verdict is Verdict.PASS
    assert result.finished_at is not None


async def test_spec_not_ending_at_100_gets_a_final_shift(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, make_spec([{"set_weight": 20}, {"pause": "10s"}]), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert router.weights_set() == [20, 100]


def _timer_durations(history: Any) -> list[float]:
    return [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        and e.user_metadata.summary.data
        and b"bake" in e.user_metadata.summary.data
    ]


async def test_pause_freezes_a_bake_and_resume_keeps_its_remaining_time(
    env: WorkflowEnvironment,
) -> None:
    router = FakeRouter()
    spec = make_spec([{"set_weight": 10}, {"pause": "30s"}, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.step_index == 1 and s.weights is not None and s.weights.canary == 10)
        await env.sleep(10)
        await handle.signal("pause", op("checking dashboards"))
        paused = await until(handle, lambda s: s.phase is Phase.PAUSED)
        await env.sleep(600)  # ten minutes paused: far longer than the bake
        still = await status_of(handle)
        assert still.phase is Phase.PAUSED and still.step_index == 1
        assert router.weights_set() == [10]
        await handle.signal("resume", op("looks fine"))
        result = await handle.result()
        history = await handle.fetch_history()
    assert paused.actions[-1].action == "pause" and paused.actions[-1].by == "alice"
    assert result.phase is Phase.PROMOTED
    assert [a.action for a in result.actions] == ["pause", "resume"]
    bakes = _timer_durations(history)
    # First the whole bake, then what was left of it after the pause (about 20 s, not 30 s).
    assert bakes[0] == pytest.approx(30, abs=0.01)
    assert 15 <= bakes[-1] <= 21, bakes


async def test_pause_step_waits_for_resume(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = make_spec([{"set_weight": 10}, {"pause": {}}, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        waiting = await until(handle, lambda s: s.phase is Phase.PAUSED and s.step_index == 1)
        await env.sleep(600)
        assert (await status_of(handle)).phase is Phase.PAUSED
        assert router.weights_set() == [10]
        await handle.signal("resume", op("QA signed off", "bob"))
        result = await handle.result()
    assert "waiting for" in waiting.message
    assert result.phase is Phase.PROMOTED
    assert router.weights_set() == [10, 100]


async def test_promote_skips_remaining_steps(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = make_spec(
        [{"set_weight": 10}, {"pause": {}}, {"set_weight": 30}, {"pause": "1h"}, {"set_weight": 60}]
    )
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.phase is Phase.PAUSED)
        await handle.signal("promote", op("hotfix, ship it"))
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert router.weights_set() == [10, 100]
    assert "promoted by an operator" in result.message
    assert result.actions[-1].action == "promote" and result.actions[-1].reason == "hotfix, ship it"


async def test_abort_during_a_timer_rolls_back(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, make_spec(CANARY), router) as handle:
        await until(handle, lambda s: s.step_index == 1)
        await handle.signal("abort", op("wrong build", "carol"))
        result = await handle.result()
    assert result.phase is Phase.ABORTED
    assert router.rollbacks() == 1 and router.canary == 0
    assert result.weights is not None and result.weights.canary == 0
    assert result.rollback is not None and result.rollback.verified_at is not None
    assert "aborted by carol: wrong build" in result.message
    assert router.weights_set() == [10]


async def test_temporal_cancel_during_a_timer_rolls_back(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, make_spec(CANARY), router) as handle:
        await until(handle, lambda s: s.step_index == 1)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert router.rollbacks() == 1 and router.canary == 0
    assert router.weights_set() == [10]


async def test_temporal_cancel_during_an_activity_rolls_back_after_it(
    env: WorkflowEnvironment,
) -> None:
    router = FakeRouter(block_at=50)
    spec = make_spec([{"set_weight": 10}, {"set_weight": 50}, {"pause": "1m"}])
    async with running(env, spec, router) as handle:
        await asyncio.wait_for(router.blocked.wait(), 30)
        await handle.cancel()
        await asyncio.sleep(0.5)
        assert router.rollbacks() == 0, "rollback must wait for the in-flight shift"
        router.release.set()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    # The late "50%" landed first, then the rollback put 100% back on stable.
    assert router.calls[-1] == ("rollback", 0)
    assert router.weights_set() == [10, 50]
    assert router.canary == 0


async def test_failing_analysis_rolls_back_by_itself(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.FAIL)
    async with running(env, make_spec(CANARY), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert router.rollbacks() == 1 and router.canary == 0
    assert "canary-5xx: stubbed fail" in result.message
    assert result.analysis.failed_ticks == 1
    assert router.weights_set() == [10]


async def test_failure_limit_tolerates_failing_ticks(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.FAIL)
    async with running(env, make_spec(CANARY, failure_limit=2), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert result.analysis.failed_ticks == 3


async def test_inconclusive_run_rolls_back_by_default(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.INCONCLUSIVE)
    async with running(env, make_spec(CANARY, inconclusive_limit=2), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert "3 inconclusive analysis ticks in a row" in result.message


async def test_inconclusive_run_can_pause_for_a_human(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.INCONCLUSIVE)
    spec = make_spec(CANARY, inconclusive_limit=1, on_inconclusive="pause")
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(15)  # two inconclusive ticks at 5 s, without waiting for them in real time
        paused = await until(handle, lambda s: s.phase is Phase.PAUSED)
        router.verdict = Verdict.PASS
        await handle.signal("resume", op("traffic is just low at night"))
        result = await handle.result()
    assert paused.actions[0].by == "sluice" and "inconclusive" in paused.actions[0].reason
    assert result.phase is Phase.PROMOTED


async def test_a_bake_never_ends_on_an_inconclusive_tick(env: WorkflowEnvironment) -> None:
    # 6 ticks fit in the 30 s bake and 12 in the 1 m one: fewer than the limit of 20, so
    # without the rule a canary too quiet to judge would be promoted silently.
    router = FakeRouter(verdict=Verdict.INCONCLUSIVE)
    async with running(env, make_spec(CANARY, inconclusive_limit=20), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert "21 inconclusive analysis ticks in a row" in result.message
    assert router.weights_set() == [10] and router.canary == 0


async def test_a_bake_waits_past_its_time_for_a_passing_tick(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.INCONCLUSIVE)
    spec = make_spec([{"set_weight": 10}, {"pause": "30s"}, {"set_weight": 100}], inconclusive_limit=100)
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(90)  # three times the bake
        waiting = await status_of(handle)
        assert waiting.phase is Phase.PROGRESSING and waiting.step_index == 1
        assert "bake over, waiting for a passing analysis tick (last tick: inconclusive)" in waiting.message
        assert router.weights_set() == [10]
        router.verdict = Verdict.PASS
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert router.weights_set() == [10, 100]
    assert result.verdicts[0].verdict is Verdict.PASS


async def test_resume_after_an_inconclusive_pause_passes_the_bake(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.INCONCLUSIVE)
    spec = make_spec(
        [{"set_weight": 10}, {"pause": "30s"}, {"set_weight": 100}],
        inconclusive_limit=8,
        on_inconclusive="pause",
    )
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(60)  # past the bake and past 8 inconclusive ticks
        paused = await until(handle, lambda s: s.phase is Phase.PAUSED)
        assert router.weights_set() == [10]
        await handle.signal("resume", op("quiet night; dashboards look fine"))
        result = await handle.result()
    assert paused.actions[-1].by == "sluice" and "9 inconclusive" in paused.actions[-1].reason
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 100]
    assert result.verdicts[0].verdict is Verdict.INCONCLUSIVE  # the human, not the data, passed it


async def test_continue_as_new_while_waiting_for_a_passing_tick(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.INCONCLUSIVE)
    spec = make_spec([{"set_weight": 10}, {"pause": "30s"}, {"set_weight": 100}], inconclusive_limit=100)
    async with running(env, spec, router, continue_as_new_after_events=150) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(300)
        carried = await until(handle, lambda s: s.continued_as_new >= 1)
        assert "waiting for a passing analysis tick" in carried.message
        assert router.weights_set() == [10]
        router.verdict = Verdict.PASS
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert router.weights_set() == [10, 100] and router.rollbacks() == 0


async def test_activity_failing_for_good_rolls_back(env: WorkflowEnvironment) -> None:
    router = FakeRouter(fail_set_at=50)
    async with running(env, make_spec(CANARY), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert "a step failed for good" in result.message and "maintenance" in result.message
    assert router.rollbacks() == 1 and router.canary == 0


async def test_preflight_failure_touches_no_traffic(env: WorkflowEnvironment) -> None:
    router = FakeRouter(preflight_error="no server 'canary' in backend be_checkout")
    async with running(env, make_spec(CANARY), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert "preflight failed" in result.message and "not touched" in result.message
    assert router.calls == [("preflight", -1)]
    assert result.traffic_touched is False


async def test_stuck_rollback_is_reported_then_completes(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.FAIL, rollback_failures=7)
    async with running(env, make_spec(CANARY), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert result.rollback is not None
    assert result.rollback.attempts == 8  # 7 failures (a round of 5, then 2), then a success
    assert result.rollback.last_error is not None and "socket refused" in result.rollback.last_error
    assert router.canary == 0


async def test_rollback_that_cannot_complete_fails_loudly(env: WorkflowEnvironment) -> None:
    router = FakeRouter(verdict=Verdict.FAIL, rollback_fatal=True)
    async with running(env, make_spec(CANARY), router) as handle:
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        status = await status_of(handle)
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "RollbackFailed"
    assert status.phase is Phase.FAILED
    assert "ROLLBACK FAILED" in status.message


@workflow.defn(name="BuggyRollout")
class BuggyRollout(RolloutWorkflow):
    """A rollout whose code has a bug right after the first shift."""

    @workflow.run
    async def run(self, inp: RolloutInput) -> RolloutStatus:
        return await super().run(inp)

    def _record_weights(self, state: TrafficState) -> None:
        if state.canary_weight == 10:
            raise KeyError("bug in workflow code")
        super()._record_weights(state)


@asynccontextmanager
async def own_server() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for one test whose leftovers would stop the shared server's time
    skipping for the tests that follow (a workflow task failing on, an abandoned activity)."""
    from tests.conftest import venv_binary  # not at import: the workflow sandbox imports this module

    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=venv_binary("temporal-test-server"),
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_a_bug_in_workflow_code_does_not_roll_back() -> None:
    async with own_server() as env:
        await _bug_scenario(env)


async def _bug_scenario(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    async with running(env, make_spec(CANARY), router, BuggyRollout) as handle:
        for _ in range(100):
            history = await handle.fetch_history()
            if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the workflow task never failed")
        await asyncio.sleep(1)
        await handle.terminate("test over")
    failed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert "bug in workflow code" in failed[0].workflow_task_failed_event_attributes.failure.message
    # The task fails and is retried; traffic is left alone instead of being rolled back.
    assert router.rollbacks() == 0
    assert router.weights_set() == [10]


async def test_continue_as_new_mid_bake_loses_nothing_and_compensates_nothing(
    env: WorkflowEnvironment,
) -> None:
    router = FakeRouter()
    spec = make_spec([{"set_weight": 10}, {"pause": "10m"}, {"set_weight": 100}])
    async with running(env, spec, router, continue_as_new_after_events=150) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert result.continued_as_new >= 5
    # No step ran twice, nothing was rolled back at a run boundary.
    assert router.weights_set() == [10, 100]
    assert router.rollbacks() == 0
    # The bake kept its remaining time across runs: 10 min at a 5 s interval is ~120 ticks,
    # and the analysis counters were carried over.
    assert 100 <= result.analysis.ticks <= 125, result.analysis.ticks
    assert result.finished_at is not None
    assert (result.finished_at - result.started_at).total_seconds() == pytest.approx(600, abs=15)


async def test_continue_as_new_keeps_a_pause_and_the_operator_history(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = make_spec([{"set_weight": 10}, {"pause": "10m"}, {"set_weight": 100}])
    async with running(env, spec, router, continue_as_new_after_events=150) as handle:
        await until(handle, lambda s: s.step_index == 1)
        await env.sleep(60)
        await handle.signal("pause", op("investigating a dashboard", "dana"))
        await until(handle, lambda s: s.phase is Phase.PAUSED)
        await env.sleep(1800)
        held = await status_of(handle)
        assert held.continued_as_new >= 3, held.continued_as_new
        assert held.phase is Phase.PAUSED and held.step_index == 1
        assert held.weights is not None and held.weights.canary == 10
        await handle.signal("resume", op("all clear", "dana"))
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    assert [(a.action, a.by) for a in result.actions] == [("pause", "dana"), ("resume", "dana")]
    assert router.weights_set() == [10, 100] and router.rollbacks() == 0
    # 1 min baked, 30 min paused, then the 9 min that were left.
    assert (result.finished_at - result.started_at).total_seconds() == pytest.approx(2400, abs=30)


async def test_abort_after_continue_as_new_still_rolls_back(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = make_spec([{"set_weight": 10}, {"pause": {}}, {"set_weight": 100}])
    async with running(env, spec, router, continue_as_new_after_events=150) as handle:
        await until(handle, lambda s: s.phase is Phase.PAUSED)
        await env.sleep(1200)
        assert (await status_of(handle)).continued_as_new >= 3
        await handle.signal("abort", op("bad release", "erin"))
        result = await handle.result()
    assert result.phase is Phase.ABORTED
    assert router.rollbacks() == 1 and router.canary == 0


async def test_a_hung_analysis_never_lets_a_bake_end_on_the_pass_before_it(env: WorkflowEnvironment) -> None:
    # Ticks every 5 s from the shift; the 30 s bake ends while the tick due at 25 s hangs, so the
    # latest pass (20 s) is more than one interval older than the bake's end. (The test server
    # does not skip time while an activity runs: the hang costs a few seconds of real time.)
    router = FakeRouter()
    spec = make_spec([{"set_weight": 10}, {"pause": "30s"}, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(22)
        passing = await until(handle, lambda s: s.analysis.ticks >= 4)
        router.hang_analysis = True  # the metric source stops answering before the bake ends
        await env.sleep(10)
        held = await until(handle, lambda s: "bake over" in s.message)
        assert router.weights_set() == [10]
        router.hang_analysis = False
        router.unhang.set()
        result = await handle.result()
    assert passing.verdicts_at is not None and passing.verdicts[0].verdict is Verdict.PASS
    # Past the bake's end, the pass from before the outage is too old to end it.
    assert held.step_index == 1 and held.weights is not None and held.weights.canary == 10
    assert "waiting for a passing analysis tick (last tick: pass recorded at" in held.message
    assert "too old" in held.message and held.verdicts_at == passing.verdicts_at
    # Once measurements come back, a fresh pass ends the bake.
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 100]
    assert result.verdicts_at is not None and result.verdicts_at > held.verdicts_at


async def test_a_stale_pass_stays_stale_across_continue_as_new() -> None:
    # As above, and the history is full just as the bake ends (70 events: the bake's timer fires
    # at event 71), so the rollout continues as new while it waits for a fresh pass. The next
    # run carries the stale pass and the moment a pass must be newer than, and keeps waiting.
    # The hung tick is abandoned at the handover, which stops the test server skipping time for
    # good: hence a server of its own.
    async with own_server() as env:
        await _stale_pass_scenario(env)


async def _stale_pass_scenario(env: WorkflowEnvironment) -> None:
    router = FakeRouter()
    spec = make_spec([{"set_weight": 10}, {"pause": "30s"}, {"set_weight": 100}])
    async with running(env, spec, router, continue_as_new_after_events=70) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(22)
        await until(handle, lambda s: s.analysis.ticks >= 4)
        router.hang_analysis = True
        await env.sleep(10)
        held = await until(handle, lambda s: s.continued_as_new == 1 and "bake over" in s.message)
        await env.sleep(3)
        still = await status_of(handle)
        assert router.weights_set() == [10]
        router.hang_analysis = False
        router.unhang.set()
        result = await handle.result()
    assert "too old" in held.message and still.step_index == 1 and still.continued_as_new == 1
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 100]
    assert result.verdicts_at is not None and held.verdicts_at is not None
    assert result.verdicts_at > held.verdicts_at
