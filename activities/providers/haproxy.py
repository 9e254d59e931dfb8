"""HAProxy provider: the new version's 5xx ratio from the router's own per-server counters."""

from __future__ import annotations

from sluice.activities.providers._compare import compare_verdict
from sluice.activities.providers._verdict import Wording, bounds, number, ratio_verdict, verdict
from sluice.activities.routers import router_for
from sluice.activities.routers.haproxy import HAProxyTrafficRouter
from sluice.activities.sequential import Totals
from sluice.contracts.calls import AnalyzeInput, ServerCounters
from sluice.contracts.spec import HAProxyMetric, HAProxyRouter, MetricSpec
from sluice.contracts.status import MetricVerdict, Verdict


class HAProxyErrorRatio:
    """`error_ratio`: 5xx responses / all responses of the canary server since `tick.baseline`.

    Counters are cumulative, so the window is "since the canary first got traffic" (the
    baseline). If a counter is below the baseline HAProxy restarted and reset its
    counters; the baseline is then taken as zero, i.e. everything since the restart.
    A router error (socket unreachable, server missing) is an inconclusive verdict, not
    an exception: measuring is not the place to fail a rollout's activity.
    """

    async def measure(self, metric: MetricSpec, tick: AnalyzeInput) -> MetricVerdict:
        """Read the canary's counters and judge the ratio against `metric.max`, or against stable."""
        assert isinstance(metric, HAProxyMetric)
        if metric.compare is not None:
            return await self._compare(metric, tick)
        assert metric.max is not None
        bound = bounds(None, metric.max)
        try:
            now = await router_for(tick.router).canary_counters()
        except Exception as err:  # a measurement problem, never an activity failure
            return verdict(
                metric.name,
                Verdict.INCONCLUSIVE,
                f"could not read HAProxy counters: {err}",
                bound=bound,
            )
        base = tick.baseline or ServerCounters()
        reset = now.responses < base.responses or now.errors_5xx < base.errors_5xx
        if reset:
            base = ServerCounters()
        requests = now.responses - base.responses
        errors_5xx = now.errors_5xx - base.errors_5xx
        return ratio_verdict(
            metric.name,
            errors_5xx,
            requests,
            Wording("{part} of {whole} responses were 5xx", "responses", "were 5xx"),
            high=metric.max,
            min_requests=metric.min_requests,
            counts={"requests": requests, "errors_5xx": errors_5xx},
            note=" (counters were reset; counting since the reset)" if reset else "",
        )

    async def _compare(self, metric: HAProxyMetric, tick: AnalyzeInput) -> MetricVerdict:
        """`compare: stable`: both servers' 5xx since the first weight > 0, one sequential-test tick."""
        if not isinstance(tick.router, HAProxyRouter):
            return verdict(
                metric.name,
                Verdict.INCONCLUSIVE,
                f"`provider: haproxy` reads HAProxy's counters, but the router is {tick.router.type}",
            )
        router = HAProxyTrafficRouter(tick.router)
        try:
            stable_now, canary_now = await router.both_counters()
        except Exception as err:  # a measurement problem, never an activity failure
            return verdict(
                metric.name,
                Verdict.INCONCLUSIVE,
                f"could not read HAProxy counters: {err}",
                bound=f"e < {number(1 / metric.alpha)}",
            )
        canary = _since(canary_now, tick.baseline)
        stable = _since(stable_now, tick.stable_baseline)
        totals = Totals(
            canary_requests=canary.responses,
            stable_requests=stable.responses,
            canary_events=(canary.errors_5xx,),
            stable_events=(stable.errors_5xx,),
        )
        return compare_verdict(
            metric.name,
            "errors",
            ["5xx"],
            totals,
            tick,
            alpha=metric.alpha,
            tolerance=metric.tolerance,
            min_requests=metric.min_requests,
        )


def _since(now: ServerCounters, base: ServerCounters | None) -> ServerCounters:
    """Counters since `base`; everything since a restart if a counter went below it."""
    base = base or ServerCounters()
    if now.responses < base.responses or now.errors_5xx < base.errors_5xx:
        return now
    return ServerCounters(
        responses=now.responses - base.responses, errors_5xx=now.errors_5xx - base.errors_5xx
    )
