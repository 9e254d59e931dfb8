"""HAProxy provider: the new version's 5xx ratio from the router's own per-server counters."""

from __future__ import annotations

from sluice.activities.haproxy_api import RuntimeAPI
from sluice.activities.providers._compare import compare_verdict
from sluice.activities.providers._verdict import Wording, bounds, number, ratio_verdict, verdict
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
        if not isinstance(tick.router, HAProxyRouter):
            return _not_haproxy(metric, tick, bound)
        canary = tick.router.canary_server
        try:
            now = (await RuntimeAPI.of(tick.router).counters(canary))[canary]
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
        bound = f"e < {number(1 / metric.alpha)}"
        if not isinstance(tick.router, HAProxyRouter):
            return _not_haproxy(metric, tick, bound)
        servers = (tick.router.stable_server, tick.router.canary_server)
        try:
            now = await RuntimeAPI.of(tick.router).counters(*servers)
        except Exception as err:  # a measurement problem, never an activity failure
            return verdict(
                metric.name, Verdict.INCONCLUSIVE, f"could not read HAProxy counters: {err}", bound=bound
            )
        stable = _since(now[servers[0]], tick.stable_baseline)
        canary = _since(now[servers[1]], tick.baseline)
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


def _not_haproxy(metric: HAProxyMetric, tick: AnalyzeInput, bound: str) -> MetricVerdict:
    """The spec refuses this pairing; a verdict rather than a crash if a hand-made input has it."""
    return verdict(
        metric.name,
        Verdict.INCONCLUSIVE,
        f"`provider: haproxy` reads HAProxy's counters, but the router is {tick.router.type}",
        bound=bound,
    )


def _since(now: ServerCounters, base: ServerCounters | None) -> ServerCounters:
    """Counters since `base`; everything since a restart if a counter went below it."""
    base = base or ServerCounters()
    if now.responses < base.responses or now.errors_5xx < base.errors_5xx:
        return now
    return ServerCounters(
        responses=now.responses - base.responses, errors_5xx=now.errors_5xx - base.errors_5xx
    )
