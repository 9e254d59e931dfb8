"""`compare: stable` in the workflow: baselines of both servers and the test's state reach the next tick."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.testing import WorkflowEnvironment

from sluice.activities.providers._compare import compare_verdict
from sluice.activities.sequential import Totals
from sluice.contracts.calls import AnalyzeInput, AnalyzeResult, ServerCounters, TrafficState
from sluice.contracts.spec import parse_spec
from sluice.contracts.status import Phase
from tests.workflow.test_rollout_workflow import CANARY, ROUTER, FakeRouter, running


@dataclass
class ComparingRouter(FakeRouter):
    """A fake router whose analysis runs the real test on counts growing by `per_tick` each tick."""

    per_tick: tuple[float, float, float, float] = (100, 900, 1, 9)  # new req, stable req, new 5xx, stable 5xx
    inputs: list[AnalyzeInput] = field(default_factory=list)

    def state(self) -> TrafficState:
        return (
            super()
            .state()
            .model_copy(update={"stable_counters": ServerCounters(responses=5000, errors_5xx=50)})
        )

    def activities(self) -> list[Callable[..., Any]]:
        others = super().activities()[:3]  # preflight, set_traffic, rollback_traffic

        @activity.defn(name="analyze")
        async def analyze(inp: AnalyzeInput) -> AnalyzeResult:
            self.inputs.append(inp)
            k = len(self.inputs)
            c_req, s_req, c_err, s_err = (k * x for x in self.per_tick)
            totals = Totals(c_req, s_req, (c_err,), (s_err,))
            m = inp.metrics[0]
            return AnalyzeResult(
                verdicts=[
                    compare_verdict(
                        m.name, "errors", ["5xx"], totals, inp, alpha=0.01, tolerance=0.1, min_requests=50
                    )
                ]
            )

        return [*others, analyze]


def compare_spec() -> Any:
    return parse_spec(
        {
            "service": "checkout",
            "version": "v2",
            "stable_version": "v1",
            "router": ROUTER,
            "steps": CANARY,
            "analysis": {
                "interval": "5s",
                "metrics": [{"name": "errors-vs-stable", "provider": "haproxy", "compare": "stable"}],
            },
        }
    )


async def test_a_healthy_canary_is_promoted_with_its_evidence(env: WorkflowEnvironment) -> None:
    router = ComparingRouter()
    async with running(env, compare_spec(), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED
    first, second = router.inputs[0], router.inputs[1]
    assert first.previous == [] and first.stable_baseline == ServerCounters(responses=5000, errors_5xx=50)
    # the second tick continues the test from the first tick's state
    assert second.previous[0].comparison is not None
    assert second.previous[0].comparison.canary_requests == 100
    last = result.verdicts[0]
    assert last.comparison is not None and last.comparison.canary_requests == 100 * len(router.inputs)
    assert "no evidence of a regression" in last.detail


async def test_a_canary_worse_than_stable_rolls_back(env: WorkflowEnvironment) -> None:
    router = ComparingRouter(per_tick=(100, 900, 6, 9))  # 6% against 1%
    async with running(env, compare_spec(), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK and router.canary == 0
    assert "worse than stable by more than 10%" in result.message
    assert result.verdicts[0].comparison is not None and result.verdicts[0].comparison.rejected


async def test_the_tests_state_survives_continue_as_new(env: WorkflowEnvironment) -> None:
    router = ComparingRouter()
    async with running(env, compare_spec(), router, continue_as_new_after_events=80) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED and result.continued_as_new >= 2
    # Every tick after the first, also the first tick of each new run, resumed the test from
    # the previous tick's state and kept both baselines.
    for inp in router.inputs[1:]:
        assert inp.previous and inp.previous[0].comparison is not None
        assert inp.stable_baseline == ServerCounters(responses=5000, errors_5xx=50)
    assert [inp.previous[0].comparison.canary_requests for inp in router.inputs[1:]] == [  # type: ignore[union-attr]
        100 * k for k in range(1, len(router.inputs))
    ]


@dataclass
class PromotedRouter(ComparingRouter):
    """Stable serves nothing at 100%; from then on the new version fails `failing` of 1000 requests a tick."""

    failing: float = 0.92
    totals: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])

    def activities(self) -> list[Callable[..., Any]]:
        others = FakeRouter.activities(self)[:3]

        @activity.defn(name="analyze")
        async def analyze(inp: AnalyzeInput) -> AnalyzeResult:
            self.inputs.append(inp)
            step = (1000, 0, 1000 * self.failing, 0) if self.canary == 100 else (100, 900, 1, 9)
            self.totals = [a + b for a, b in zip(self.totals, step, strict=True)]
            c_req, s_req, c_err, s_err = self.totals
            m = inp.metrics[0]
            verdict = compare_verdict(
                m.name,
                "errors",
                ["5xx"],
                Totals(c_req, s_req, (c_err,), (s_err,)),
                inp,
                alpha=0.01,
                tolerance=0.1,
                min_requests=50,
            )
            return AnalyzeResult(verdicts=[verdict])

        return [*others, analyze]


def watched_spec() -> Any:
    spec = compare_spec().model_dump(mode="json", exclude_none=True)
    return parse_spec({**spec, "post_promotion": "2m"})


async def test_a_version_failing_in_the_post_promotion_watch_is_switched_back(
    env: WorkflowEnvironment,
) -> None:
    router = PromotedRouter(failing=0.92)
    async with running(env, watched_spec(), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK and router.canary == 0
    assert "compared with its rate recorded before (1%" in result.message


async def test_a_healthy_version_passes_the_post_promotion_watch(env: WorkflowEnvironment) -> None:
    router = PromotedRouter(failing=0.01)
    async with running(env, watched_spec(), router) as handle:
        result = await handle.result()
    assert result.phase is Phase.PROMOTED and router.canary == 100
    assert result.verdicts[0].comparison is not None and result.verdicts[0].comparison.against_baseline
