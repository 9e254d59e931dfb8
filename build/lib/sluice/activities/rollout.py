"""The rollout's activities: preflight, set_traffic, rollback_traffic, analyze.

Each is idempotent (a retry repeats a declarative change or a read) and names what went
wrong through `ApplicationError.type` (see `contracts.errors`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity

from sluice.activities.notify import notify
from sluice.activities.providers import provider_for
from sluice.activities.routers import router_for
from sluice.contracts.calls import (
    AnalyzeInput,
    AnalyzeResult,
    PreflightInput,
    RollbackInput,
    SetTrafficInput,
    TrafficState,
)


@activity.defn(name="preflight")
async def preflight(inp: PreflightInput) -> TrafficState:
    """Check the router answers and both servers exist, touching nothing."""
    return await router_for(inp.router).preflight()


@activity.defn(name="set_traffic")
async def set_traffic(inp: SetTrafficInput) -> TrafficState:
    """Apply `canary_weight` percent to the new version and the rest to stable; read back."""
    return await router_for(inp.router).set_weights(inp.canary_weight)


@activity.defn(name="rollback_traffic")
async def rollback_traffic(inp: RollbackInput) -> TrafficState:
    """Put 100% of traffic on stable and verify it by reading the weights back."""
    activity.logger.warning("rolling back to 100%% stable: %s", inp.reason)
    state = await router_for(inp.router).set_weights(0)
    return state.model_copy(update={"attempt": activity.info().attempt})


@activity.defn(name="analyze")
async def analyze(inp: AnalyzeInput) -> AnalyzeResult:
    """Measure every metric of one analysis tick concurrently and return their verdicts."""
    verdicts = await asyncio.gather(*(provider_for(m).measure(m, inp) for m in inp.metrics))
    return AnalyzeResult(verdicts=list(verdicts))


ALL_ACTIVITIES: list[Callable[..., Any]] = [preflight, set_traffic, rollback_traffic, analyze, notify]
"""Every activity the worker registers."""
