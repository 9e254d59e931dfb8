"""The router is the truth: drift noticed and handled per `on_drift`, and every operator signal recorded.

Time-skipping server, activities stubbed by name (see test_rollout_workflow.py). A hand edit
or an HAProxy reload is played by changing `FakeRouter.canary` behind the workflow's back; the
stubbed `analyze` reads it back as the real one does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from sluice.contracts.calls import SetTrafficInput, TrafficState
from sluice.contracts.notify import NotifyInput, RolloutEvent
from sluice.contracts.spec import RolloutSpec, parse_spec
from sluice.contracts.status import Phase, Weights
from tests.workflow.test_rollout_workflow import (
    ROUTER,
    FakeRouter,
    make_spec,
    op,
    own_server,
    running,
    status_of,
    until,
)

STEPS = [{"set_weight": 10}, {"pause": "1m"}, {"set_weight": 100}]
HOOK = [{"url": "http://127.0.0.1:9/hook"}]


@dataclass
class WatchedRouter(FakeRouter):
    """A FakeRouter whose webhooks are kept."""

    events: list[RolloutEvent] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="notify")
        async def notify(inp: NotifyInput) -> None:
            self.events.append(inp.event)

        return [*super().activities(), notify]


def drift_spec(**analysis: Any) -> RolloutSpec:
    """The 10% → 1 min → 100% canary, with a webhook and `analysis` fields laid over."""
    data = make_spec(STEPS, **analysis).model_dump(mode="json", exclude_none=True)
    return parse_spec({**data, "notify": HOOK})


async def test_drift_is_reapplied_by_default(env: WorkflowEnvironment) -> None:
    router = WatchedRouter()
    async with running(env, drift_spec(), router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(12)
        router.canary = 50  # someone sets a weight by hand
        await env.sleep(6)
        fixed = await until(handle, lambda s: s.drift is not None and s.drift.resolved_at is not None)
        result = await handle.result()
    drift = fixed.drift
    assert drift is not None and drift.action == "reapply" and drift.reapplied == 1
    assert (drift.expected.canary, drift.found.canary) == (10, 50)
    assert fixed.weights is not None and fixed.weights.canary == 10 and fixed.weights_at is not None
    # Sluice put its own split back, once, then went on with the steps.
    assert router.weights_set() == [10, 10, 100]
    assert result.phase is Phase.PROMOTED and router.rollbacks() == 0
    drifted = [e for e in router.events if e.kind == "traffic_drifted"]
    assert len(drifted) == 1 and drifted[0].drift is not None and drifted[0].drift.found.canary == 50


async def test_drift_can_pause_for_a_human(env: WorkflowEnvironment) -> None:
    router = WatchedRouter()
    async with running(env, drift_spec(on_drift="pause"), router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(12)
        router.canary = 0  # an HAProxy reload reset the runtime weights to the config file
        await env.sleep(6)
        paused = await until(handle, lambda s: s.phase is Phase.PAUSED)
        await env.sleep(60)
        held = await status_of(handle)
        await handle.signal("resume", op("reload was planned; go on", "bob"))
        result = await handle.result()
    # The status shows where traffic really is, not where Sluice put it.
    assert paused.weights is not None and paused.weights.canary == 0
    assert paused.drift is not None and paused.drift.action == "pause" and paused.drift.resolved_at is None
    assert paused.actions[-1].action == "pause" and paused.actions[-1].by == "sluice"
    assert "traffic drifted" in paused.actions[-1].reason
    # Paused once per drift, traffic left where it was found, nothing re-applied.
    assert held.phase is Phase.PAUSED and held.drift is not None and held.drift.count > 1
    assert [a.action for a in held.actions] == ["pause"]
    assert result.phase is Phase.PROMOTED and router.weights_set() == [10, 100]
    assert [e.kind for e in router.events].count("traffic_drifted") == 1


async def test_drift_can_roll_back(env: WorkflowEnvironment) -> None:
    router = WatchedRouter()
    async with running(env, drift_spec(on_drift="rollback"), router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(12)
        router.canary = 30
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert "traffic drifted" in result.message and "on_drift: rollback" in result.message
    assert router.rollbacks() == 1 and router.canary == 0
    assert result.weights is not None and result.weights.canary == 0
    assert result.drift is not None and result.drift.found.canary == 30
    assert router.weights_set() == [10]


async def test_a_wait_without_analysis_reads_the_router_and_re_applies(env: WorkflowEnvironment) -> None:
    spec = parse_spec(
        {
            "service": "checkout",
            "version": "v2",
            "stable_version": "v1",
            "router": ROUTER,
            "steps": [{"set_weight": 10}, {"pause": {}}, {"set_weight": 100}],
        }
    )
    router = FakeRouter()
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.phase is Phase.PAUSED and s.weights is not None)
        router.canary = 0  # a reload while the rollout waits for a human
        await env.sleep(25)
        fixed = await until(handle, lambda s: s.drift is not None and s.drift.resolved_at is not None)
        await handle.signal("resume", op("go on", "bob"))
        result = await handle.result()
    assert ("read_traffic", 0) in router.calls
    assert fixed.drift is not None and fixed.drift.action == "reapply" and fixed.drift.found.canary == 0
    assert router.weights_set() == [10, 10, 100] and result.phase is Phase.PROMOTED


@dataclass
class TwoInstances(FakeRouter):
    """Two HAProxy instances; `second` is the other one's canary weight when it differs."""

    second: int | None = None

    def state(self) -> TrafficState:
        state = super().state()
        other = self.canary if self.second is None else self.second
        return state.model_copy(
            update={
                "instances": [
                    Weights(stable=100 - self.canary, canary=self.canary),
                    Weights(stable=100 - other, canary=other),
                ]
            }
        )

    def activities(self) -> list[Callable[..., Any]]:
        found = super().activities()

        @activity.defn(name="set_traffic")
        async def set_traffic(inp: SetTrafficInput) -> TrafficState:
            self.canary, self.second = inp.canary_weight, None
            self.calls.append(("set_traffic", inp.canary_weight))
            return self.state()

        return [set_traffic if a.__name__ == "set_traffic" else a for a in found]


async def test_one_reloaded_instance_of_two_is_drift(env: WorkflowEnvironment) -> None:
    router = TwoInstances()
    async with running(env, make_spec(STEPS), router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await env.sleep(12)
        router.second = 0  # one of the two HAProxy instances was reloaded
        await env.sleep(6)
        fixed = await until(handle, lambda s: s.drift is not None and s.drift.resolved_at is not None)
        result = await handle.result()
    assert fixed.drift is not None and fixed.drift.found.canary == 0 and fixed.drift.expected.canary == 10
    assert router.weights_set() == [10, 10, 100] and result.phase is Phase.PROMOTED


async def test_a_read_during_a_traffic_change_is_not_drift(env: WorkflowEnvironment) -> None:
    # The shift to 100% blocks; a tick reads the split meanwhile (10% or 100%, half applied):
    # proof of nothing, so no drift, no re-apply.
    router = FakeRouter(block_at=100)
    async with running(env, make_spec([{"set_weight": 10}, {"pause": "10s"}]), router) as handle:
        await asyncio.wait_for(router.blocked.wait(), 30)
        router.canary = 100  # the change has landed on the router, its activity not finished
        await env.sleep(6)  # a tick, within the shift's 10 s start-to-close
        await until(handle, lambda s: s.analysis.ticks >= 3)
        read_meanwhile = ("analyze", 100) in router.calls
        router.release.set()
        result = await handle.result()
    assert read_meanwhile
    assert result.phase is Phase.PROMOTED and result.drift is None
    assert router.weights_set() == [10, 100]


async def test_signals_while_ending_are_recorded_as_too_late(env: WorkflowEnvironment) -> None:
    router = FakeRouter(hold_rollback=True)
    async with running(env, make_spec(STEPS), router) as handle:
        await until(handle, lambda s: s.weights is not None and s.weights.canary == 10)
        await handle.signal("abort", op("bad build", "carol"))
        await asyncio.wait_for(router.blocked.wait(), 30)
        for name, who in [("pause", "dan"), ("resume", "erin"), ("promote", "frank"), ("abort", "gina")]:
            await handle.signal(name, op(f"{name} please", who))
        ending = await until(handle, lambda s: len(s.actions) == 5)
        router.release.set()
        result = await handle.result()
    assert ending.phase is Phase.ROLLING_BACK
    assert [(a.action, a.by) for a in result.actions] == [
        ("abort", "carol"),
        ("pause_too_late", "dan"),
        ("resume_too_late", "erin"),
        ("promote_too_late", "frank"),
        ("abort_too_late", "gina"),
    ]
    late = result.actions[1]
    assert "too late" in late.reason and "rollout is ending" in late.reason and "pause please" in late.reason
    assert result.phase is Phase.ABORTED and router.weights_set() == [10]


async def test_a_burst_of_signals_is_recorded_whole(env: WorkflowEnvironment) -> None:
    router = FakeRouter(hold_rollback=True)
    spec = make_spec([{"set_weight": 10}, {"pause": "1h"}, {"set_weight": 100}])
    async with running(env, spec, router) as handle:
        await until(handle, lambda s: s.step_index == 1)
        steering = ["pause", "resume"] * 20
        late = ["pause", "resume", "promote", "abort"] * 2
        names = [*steering, "abort", *late]
        signals = [handle.signal(n, op(f"burst {i}", f"op{i}")) for i, n in enumerate(names)]
        await asyncio.gather(*signals[: len(steering)])
        await signals[len(steering)]
        await asyncio.gather(*signals[len(steering) + 1 :])
        await until(handle, lambda s: len(s.actions) == len(names))
        router.release.set()
        result = await handle.result()
    assert len(result.actions) == len(names)
    assert sorted(a.by for a in result.actions) == sorted(f"op{i}" for i in range(len(names)))
    assert sum(a.action == "abort" for a in result.actions) == 1
    assert result.phase is Phase.ABORTED


async def test_a_tick_lost_with_its_worker_is_retried_after_one_heartbeat_timeout() -> None:
    # The tick hangs without heartbeating (its worker died): Temporal notices at the heartbeat
    # timeout (one interval, at least 5 s), not at start-to-close (15 s), and runs it again.
    # The abandoned attempt would stop the shared server skipping time: a server of its own.
    async with own_server() as env:
        router = FakeRouter()
        spec = make_spec([{"set_weight": 10}, {"pause": "30s"}, {"set_weight": 100}])
        async with running(env, spec, router) as handle:
            await until(handle, lambda s: s.analysis.ticks >= 1)
            router.lose_a_tick = True
            result = await handle.result()
            history = await handle.fetch_history()
    events = {e.event_id: e for e in history.events}
    retried = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.attempt == 2
    ]
    assert len(retried) == 1
    # The test server keeps no `last_failure`; which timeout fired shows in server time: the
    # second attempt started after the heartbeat timeout (5 s), before start-to-close (15 s).
    scheduled = events[retried[0].activity_task_started_event_attributes.scheduled_event_id]
    waited = (retried[0].event_time.ToDatetime() - scheduled.event_time.ToDatetime()).total_seconds()
    assert 5 <= waited < 15, waited
    assert result.phase is Phase.PROMOTED
