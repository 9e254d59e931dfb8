"""HAProxy provider: the new version's 5xx ratio from the router's own per-server counters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from sluice.activities.haproxy_api import RuntimeAPI
from sluice.activities.providers._compare import compare_verdict
from sluice.activities.providers._verdict import Wording, bounds, number, ratio_verdict, verdict
from sluice.activities.sequential import Totals
from sluice.contracts.calls import AnalyzeInput, ServerCounters
from sluice.contracts.spec import HAProxyMetric, HAProxyRouter, MetricSpec
from sluice.contracts.status import MetricVerdict, Verdict

_UPTIME_SLACK = 2.0
"""Seconds of `Uptime_sec` rounding and clock skew allowed before an instance counts as restarted."""


class HAProxyErrorRatio:
    """`error_ratio`: 5xx responses / all responses of the canary server since `tick.baseline`.

    Counters are cumulative, so the window is "since the canary first got traffic" (the
    baseline). A restart or reload of HAProxy resets its counters: an instance that started
    after the analysis began (by its `Uptime_sec`), or whose counters went below the
    baseline, is counted from zero, i.e. everything since the restart. With several
    instances the baseline is their sum, which cannot be split again: once one of them
    restarted, only the restarted ones are counted (since their restart), and the detail
    says so. A router error (socket unreachable, server missing) is an inconclusive verdict,
    not an exception: measuring is not the place to fail a rollout's activity.
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
            read = await _read(tick.router, (canary,), tick.since)
        except Exception as err:  # a measurement problem, never an activity failure
            return verdict(
                metric.name,
                Verdict.INCONCLUSIVE,
                f"could not read HAProxy counters: {err}",
                bound=bound,
            )
        counted, reset = _since(read.now[canary], read.baseline(tick.baseline))
        return ratio_verdict(
            metric.name,
            counted.errors_5xx,
            counted.responses,
            Wording("{part} of {whole} responses were 5xx", "responses", "were 5xx"),
            high=metric.max,
            min_requests=metric.min_requests,
            counts={"requests": counted.responses, "errors_5xx": counted.errors_5xx},
            note=read.note(reset),
        )

    async def _compare(self, metric: HAProxyMetric, tick: AnalyzeInput) -> MetricVerdict:
        """`compare: stable`: both servers' 5xx since the first weight > 0, one sequential-test tick."""
        bound = f"e < {number(1 / metric.alpha)}"
        if not isinstance(tick.router, HAProxyRouter):
            return _not_haproxy(metric, tick, bound)
        servers = (tick.router.stable_server, tick.router.canary_server)
        try:
            read = await _read(tick.router, servers, tick.since)
        except Exception as err:  # a measurement problem, never an activity failure
            return verdict(
                metric.name, Verdict.INCONCLUSIVE, f"could not read HAProxy counters: {err}", bound=bound
            )
        stable, stable_reset = _since(read.now[servers[0]], read.baseline(tick.stable_baseline))
        canary, canary_reset = _since(read.now[servers[1]], read.baseline(tick.baseline))
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
            note=read.note(stable_reset or canary_reset) if read.restarted else "",
        )


@dataclass(frozen=True)
class _Read:
    """Counters of some servers summed over the HAProxy instances that count for this tick."""

    now: dict[str, ServerCounters]
    instances: int
    restarted: list[str]
    """Instances (`HAProxy at ...`) that started after the analysis began; if any, only they count."""

    def baseline(self, base: ServerCounters | None) -> ServerCounters | None:
        """The baseline to subtract: none once an instance restarted (its counters began at zero)."""
        return None if self.restarted else base

    def note(self, reset: bool) -> str:
        if self.restarted and self.instances > 1:
            return (
                f" ({', '.join(self.restarted)} restarted since the analysis began; counting only "
                "its responses since then)"
            )
        return " (counters were reset; counting since the reset)" if reset or self.restarted else ""


async def _read(router: HAProxyRouter, servers: tuple[str, ...], since: datetime | None) -> _Read:
    """`servers`' counters from every instance, and which instances restarted after `since`."""
    apis = RuntimeAPI.all_of(router)

    async def one(api: RuntimeAPI) -> tuple[dict[str, ServerCounters], int | None]:
        return await api.counters(*servers), (await api.uptime() if since is not None else None)

    readings = await asyncio.gather(*(one(api) for api in apis))
    elapsed = (datetime.now(UTC) - since).total_seconds() if since is not None else 0.0
    restarted = [
        i for i, (_, uptime) in enumerate(readings) if uptime is not None and uptime + _UPTIME_SLACK < elapsed
    ]
    used = [readings[i][0] for i in restarted] if restarted else [r[0] for r in readings]
    now = {
        server: ServerCounters(
            responses=sum(r[server].responses for r in used),
            errors_5xx=sum(r[server].errors_5xx for r in used),
        )
        for server in servers
    }
    return _Read(now=now, instances=len(apis), restarted=[apis[i].where for i in restarted])


def _not_haproxy(metric: HAProxyMetric, tick: AnalyzeInput, bound: str) -> MetricVerdict:
    """The spec refuses this pairing; a verdict rather than a crash if a hand-made input has it."""
    return verdict(
        metric.name,
        Verdict.INCONCLUSIVE,
        f"`provider: haproxy` reads HAProxy's counters, but the router is {tick.router.type}",
        bound=bound,
    )


def _since(now: ServerCounters, base: ServerCounters | None) -> tuple[ServerCounters, bool]:
    """Counters since `base`, and whether a counter went below it (a restart): then all of `now`."""
    base = base or ServerCounters()
    if now.responses < base.responses or now.errors_5xx < base.errors_5xx:
        return now, True
    counted = ServerCounters(
        responses=now.responses - base.responses, errors_5xx=now.errors_5xx - base.errors_5xx
    )
    return counted, False
