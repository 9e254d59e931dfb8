"""The rollout's activities: preflight, set_traffic, rollback_traffic, read_traffic, analyze.

Each is idempotent (a retry repeats a declarative change or a read) and names what went
wrong through `ApplicationError.type` (see `contracts.errors`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from sluice.activities.notify import notify
from sluice.activities.providers import provider_for
from sluice.activities.routers import router_for
from sluice.contracts.calls import (
    AnalyzeInput,
    AnalyzeResult,
    PreflightInput,
    ReadTrafficInput,
    RollbackInput,
    SetTrafficInput,
    TrafficState,
)
from sluice.contracts.text import cap


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


@activity.defn(name="read_traffic")
async def read_traffic(inp: ReadTrafficInput) -> TrafficState:
    """The router's current split, changing nothing (a wait without analysis watching for drift)."""
    return await router_for(inp.router).read_weights()


@activity.defn(name="analyze")
async def analyze(inp: AnalyzeInput) -> AnalyzeResult:
    """Measure every metric of one analysis tick concurrently and read the router's split with them.

    Heartbeats while it measures (when the workflow gave it a heartbeat timeout), so that a
    tick lost with its worker is noticed within that timeout, not at start-to-close. A failed
    read of the split never fails the tick: the verdicts stand, and `weights_error` says why.
    """
    beating = asyncio.create_task(_heartbeat_while_running())
    try:
        verdicts, weights = await asyncio.gather(
            asyncio.gather(*(provider_for(m).measure(m, inp) for m in inp.metrics)),
            _read_split(inp),
        )
    finally:
        beating.cancel()
    state, error = weights
    return AnalyzeResult(verdicts=list(verdicts), weights=state, weights_error=error)


async def _read_split(inp: AnalyzeInput) -> tuple[TrafficState | None, str]:
    try:
        return await router_for(inp.router).read_weights(), ""
    except Exception as err:  # any failure to read is reported with the tick, never raised
        message = err.message if isinstance(err, ApplicationError) else f"{type(err).__name__}: {err}"
        return None, cap(message)


async def _heartbeat_while_running() -> None:
    """Heartbeat every third of the heartbeat timeout (if any) until cancelled."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        return
    every = max(timeout.total_seconds() / 3, 0.1)
    while True:
        activity.heartbeat()
        await asyncio.sleep(every)


ALL_ACTIVITIES: list[Callable[..., Any]] = [
    preflight,
    set_traffic,
    rollback_traffic,
    read_traffic,
    analyze,
    notify,
]
"""Every activity the worker registers."""
