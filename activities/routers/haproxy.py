"""HAProxy router: weights two servers of one backend through the runtime API (stats socket)."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from sluice.activities.haproxy_api import RuntimeAPI
from sluice.contracts import errors
from sluice.contracts.calls import ServerCounters, TrafficState
from sluice.contracts.spec import HAProxyRouter


class HAProxyTrafficRouter:
    """Splits a backend's requests between `stable_server` and `canary_server` by weight.

    A canary percent `w` becomes weight `w` on the canary server and `100 - w` on the stable
    one; with `balance roundrobin` HAProxy then sends exactly that share of requests (over
    each cycle of 100). Weights are absolute (never `N%`, which HAProxy reads as a percent
    of the initial weight) and always sum to 100, so the backend is never left without
    a server.

    Nothing is cached between calls (see `RuntimeAPI`), so each method reflects the live
    state. Besides the split, the returned `TrafficState` carries the servers' counters
    (HAProxy is the one router that has them): the baseline of an HAProxy analysis.
    """

    def __init__(self, spec: HAProxyRouter) -> None:
        self.spec = spec
        self._api = RuntimeAPI.of(spec)

    # --- TrafficRouter ------------------------------------------------------------------

    async def preflight(self) -> TrafficState:
        """Check the socket answers, both servers exist and all traffic is on stable. Changes nothing.

        A rollout starts with all traffic on `stable_server` and none on `canary_server`.
        Any other split is refused (UNEXPECTED_SPLIT, not retryable): after a promotion the
        new version runs on `canary_server` at 100%, and a next spec that keeps the names
        would "roll back" to the old version and call it stable.
        """
        counters = await self._api.counters(self.spec.canary_server)
        stable, canary = await self._weights()
        if stable == 0 or canary > 0:
            raise self._unexpected_split(stable, canary)
        state = self._state(stable, canary, counters[self.spec.canary_server])
        state.detail = f"{self._api.where}: {state.detail}"
        return state

    async def read_weights(self) -> TrafficState:
        """The current split (from `get weight`) and the canary's counters."""
        counters = await self._api.counters(self.spec.canary_server)
        stable, canary = await self._weights()
        return self._state(stable, canary, counters[self.spec.canary_server])

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Set canary `canary_weight` and stable `100 - canary_weight`, then verify by reading back.

        The canary's counters are read before anything changes (they are the baseline
        of an analysis that starts at this step) and returned in `canary_counters`.

        Two commands cannot change two weights atomically, so the order is chosen so that
        a failure between them ("an unreachable router never gets half a change") leaves
        the safest split:

        - The canary server is set first. When its share goes down (including a rollback
          to 0) the first command already takes traffic away from the new version: a
          rollback whose second command fails has still removed the canary from the
          rotation. When its share goes up, the intermediate split gives the canary less
          than the target, never more.
        - Exception: if stable currently has weight 0 and the canary is going to 0 (a
          rollback from 100% canary), canary-first would leave both servers at 0 and the
          backend answering 503. Stable is raised first instead.

        Either way the intermediate canary share lies between the old and the new one, and
        an activity retry repeats both commands, since they are declarative.
        """
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        stable_weight = 100 - canary_weight
        before = await self._api.counters(self.spec.stable_server, self.spec.canary_server)
        current_stable = await self._api.get_weight(self.spec.stable_server)
        order = [
            (self.spec.canary_server, canary_weight),
            (self.spec.stable_server, stable_weight),
        ]
        if current_stable == 0 and canary_weight == 0:
            order.reverse()
        for server, weight in order:
            await self._api.set_weight(server, weight)

        stable_read = await self._api.get_weight(self.spec.stable_server)
        canary_read = await self._api.get_weight(self.spec.canary_server)
        if (stable_read, canary_read) != (stable_weight, canary_weight):
            raise ApplicationError(
                f"{self._api.where}: set weights stable={stable_weight} canary={canary_weight} "
                f"but read back stable={stable_read} canary={canary_read}; another client may "
                "be changing weights",
                type=errors.TRAFFIC_NOT_APPLIED,
            )
        state = self._state(stable_read, canary_read, before[self.spec.canary_server])
        state.stable_counters = before[self.spec.stable_server]
        return state

    # --- helpers --------------------------------------------------------------------------

    async def _weights(self) -> tuple[int, int]:
        """(stable, canary) weights as HAProxy has them now."""
        stable = await self._api.get_weight(self.spec.stable_server)
        canary = await self._api.get_weight(self.spec.canary_server)
        return stable, canary

    def _unexpected_split(self, stable: int, canary: int) -> ApplicationError:
        """Why a rollout cannot start from these weights, and how to fix the spec or HAProxy."""
        s, c, backend = self.spec.stable_server, self.spec.canary_server, self.spec.backend
        if stable == 0 and canary > 0:
            fix = f"if {c!r} runs the live version, swap stable_server and canary_server in the spec"
        elif stable == 0:
            fix = f"set weight {backend}/{s} 100 first"
        else:
            fix = f"put it all on stable first: set weight {backend}/{c} 0 and {backend}/{s} 100"
        return ApplicationError(
            f"{self._api.where}: found {s}={stable} {c}={canary}, but a rollout starts with all "
            f"traffic on stable_server; {fix}",
            type=errors.UNEXPECTED_SPLIT,
            non_retryable=True,
        )

    def _state(self, stable: int, canary: int, counters: ServerCounters) -> TrafficState:
        total = stable + canary
        if total == 0:
            return TrafficState(
                stable_weight=0,
                canary_weight=0,
                canary_counters=counters,
                detail="both servers have weight 0: the backend answers every request with 503",
            )
        canary_pct = round(100 * canary / total)
        return TrafficState(
            stable_weight=100 - canary_pct,
            canary_weight=canary_pct,
            canary_counters=counters,
            detail=f"weights {self.spec.stable_server}={stable} {self.spec.canary_server}={canary}",
        )
