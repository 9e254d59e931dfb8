"""HAProxy router: weights two servers of one backend through the runtime API (stats socket)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.exceptions import ApplicationError

from sluice.activities.haproxy_api import RuntimeAPI
from sluice.contracts import errors
from sluice.contracts.calls import ServerCounters, TrafficState
from sluice.contracts.spec import HAProxyRouter
from sluice.contracts.status import Weights
from sluice.contracts.text import cap

T = TypeVar("T")


class HAProxyTrafficRouter:
    """Splits a backend's requests between `stable_server` and `canary_server` by weight.

    A canary percent `w` becomes weight `w` on the canary server and `100 - w` on the stable
    one; with `balance roundrobin` HAProxy then sends exactly that share of requests (over
    each cycle of 100). Weights are absolute (never `N%`, which HAProxy reads as a percent
    of the initial weight) and always sum to 100, so the backend is never left without
    a server.

    With several instances (`admin_socket` as a list: an HA pair, a fleet), every change is
    applied to each and read back from each, concurrently; one that fails does not stop the
    others (a rollback still takes the canary out wherever it can), and the call then raises
    so that the activity's retry repeats the change everywhere. Counters are summed over the
    instances, as each counts only the requests it proxied.

    Nothing is cached between calls (see `RuntimeAPI`), so each method reflects the live
    state. Besides the split, the returned `TrafficState` carries the servers' counters
    (HAProxy is the one router that has them): the baseline of an HAProxy analysis.
    """

    def __init__(self, spec: HAProxyRouter) -> None:
        self.spec = spec
        self._apis = RuntimeAPI.all_of(spec)

    # --- TrafficRouter ------------------------------------------------------------------

    async def preflight(self) -> TrafficState:
        """Check each socket answers, both servers exist and all traffic is on stable. Changes nothing.

        A rollout starts with all traffic on `stable_server` and none on `canary_server`, on
        every instance. Any other split is refused (UNEXPECTED_SPLIT, not retryable): after a
        promotion the new version runs on `canary_server` at 100%, and a next spec that keeps
        the names would "roll back" to the old version and call it stable.
        """
        states = await self._each(self._preflight_one)
        return self._combine(states, where=True)

    async def read_weights(self) -> TrafficState:
        """The current split (from `get weight`) and the canary's counters.

        When instances disagree the split of the one that sends the new version the most
        traffic is returned, and the detail shows each.
        """
        return self._combine(await self._each(self._read_one), where=len(self._apis) > 1)

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Set canary `canary_weight` and stable `100 - canary_weight` everywhere; verify by reading back.

        The counters are read before anything changes (they are the baseline of an analysis
        that starts at this step) and returned in `canary_counters` and `stable_counters`.
        See `_set_one` for the order of the two commands on each instance.
        """
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        states = await self._each(lambda api: self._set_one(api, canary_weight))
        return self._combine(states, where=len(self._apis) > 1)

    # --- one instance -----------------------------------------------------------------------

    async def _preflight_one(self, api: RuntimeAPI) -> TrafficState:
        counters = await api.counters(self.spec.canary_server)
        stable, canary = await self._weights(api)
        if stable == 0 or canary > 0:
            raise self._unexpected_split(api, stable, canary)
        return self._state(stable, canary, counters[self.spec.canary_server])

    async def _read_one(self, api: RuntimeAPI) -> TrafficState:
        counters = await api.counters(self.spec.canary_server)
        stable, canary = await self._weights(api)
        return self._state(stable, canary, counters[self.spec.canary_server])

    async def _set_one(self, api: RuntimeAPI, canary_weight: int) -> TrafficState:
        """Set both weights on one instance and read them back.

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
        stable_weight = 100 - canary_weight
        before = await api.counters(self.spec.stable_server, self.spec.canary_server)
        current_stable = await api.get_weight(self.spec.stable_server)
        order = [
            (self.spec.canary_server, canary_weight),
            (self.spec.stable_server, stable_weight),
        ]
        if current_stable == 0 and canary_weight == 0:
            order.reverse()
        for server, weight in order:
            await api.set_weight(server, weight)

        stable_read, canary_read = await self._weights(api)
        if (stable_read, canary_read) != (stable_weight, canary_weight):
            raise ApplicationError(
                f"{api.where}: set weights stable={stable_weight} canary={canary_weight} "
                f"but read back stable={stable_read} canary={canary_read}; another client may "
                "be changing weights",
                type=errors.TRAFFIC_NOT_APPLIED,
            )
        state = self._state(stable_read, canary_read, before[self.spec.canary_server])
        state.stable_counters = before[self.spec.stable_server]
        return state

    async def _weights(self, api: RuntimeAPI) -> tuple[int, int]:
        """(stable, canary) weights as the instance has them now."""
        stable = await api.get_weight(self.spec.stable_server)
        canary = await api.get_weight(self.spec.canary_server)
        return stable, canary

    # --- all instances ----------------------------------------------------------------------

    async def _each(self, call: Callable[[RuntimeAPI], Awaitable[T]]) -> list[tuple[RuntimeAPI, T]]:
        """`call` on every instance concurrently; all of them finish before anything is raised.

        One instance: its error as it is. Several: one error naming each instance that
        failed, not retryable if any failure is not (a human has to fix that instance).
        """
        results = await asyncio.gather(*(call(api) for api in self._apis), return_exceptions=True)
        done: list[tuple[RuntimeAPI, T]] = []
        failed: list[BaseException] = []
        for api, result in zip(self._apis, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(result)
            else:
                done.append((api, result))
        if not failed:
            return done
        if len(self._apis) == 1 or not all(isinstance(e, ApplicationError) for e in failed):
            raise failed[0]
        app_errors = [e for e in failed if isinstance(e, ApplicationError)]
        fatal = [e for e in app_errors if e.non_retryable]
        first = (fatal or app_errors)[0]
        raise ApplicationError(
            cap(
                f"{len(failed)} of {len(self._apis)} HAProxy instances failed: "
                + "; ".join(e.message for e in app_errors)
            ),
            type=first.type,
            non_retryable=bool(fatal),
        )

    def _combine(self, states: list[tuple[RuntimeAPI, TrafficState]], *, where: bool) -> TrafficState:
        """One state for all instances: the split of the one giving the canary the most,
        counters summed, and each instance's weights in the detail (prefixed by where it is)."""
        split = max((s for _, s in states), key=lambda s: s.canary_weight)
        detail = "; ".join(f"{api.where}: {s.detail}" for api, s in states) if where else split.detail
        instances = [Weights(stable=s.stable_weight, canary=s.canary_weight) for _, s in states]
        return split.model_copy(
            update={
                "canary_counters": _sum([s.canary_counters for _, s in states]),
                "stable_counters": _sum([s.stable_counters for _, s in states]),
                "detail": detail,
                "instances": instances if len(instances) > 1 else [],
            }
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

    def _unexpected_split(self, api: RuntimeAPI, stable: int, canary: int) -> ApplicationError:
        """Why a rollout cannot start from these weights, and how to fix the spec or HAProxy."""
        s, c, backend = self.spec.stable_server, self.spec.canary_server, self.spec.backend
        if stable == 0 and canary > 0:
            fix = f"if {c!r} runs the live version, swap stable_server and canary_server in the spec"
        elif stable == 0:
            fix = f"set weight {backend}/{s} 100 first"
        else:
            fix = f"put it all on stable first: set weight {backend}/{c} 0 and {backend}/{s} 100"
        return ApplicationError(
            f"{api.where}: found {s}={stable} {c}={canary}, but a rollout starts with all "
            f"traffic on stable_server; {fix}",
            type=errors.UNEXPECTED_SPLIT,
            non_retryable=True,
        )


def _sum(counters: list[ServerCounters | None]) -> ServerCounters | None:
    """The sum of the instances' counters; None if any instance has none."""
    present = [c for c in counters if c is not None]
    if len(present) < len(counters):
        return None
    return ServerCounters(
        responses=sum(c.responses for c in present), errors_5xx=sum(c.errors_5xx for c in present)
    )
