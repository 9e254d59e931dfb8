"""Caddy router: the weights of a `reverse_proxy` handler's upstreams, through Caddy's admin API."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from sluice.activities.routers._files import config_error
from sluice.activities.routers._http import body_of, json_of, send
from sluice.contracts import errors
from sluice.contracts.calls import TrafficState
from sluice.contracts.spec import CaddyRouter
from sluice.contracts.text import cap

_POLICY = "weighted_round_robin"


class CaddyTrafficRouter:
    """Sets `load_balancing.selection_policy.weights` of the handler with `@id` `handler_id`.

    Caddy's `weighted_round_robin` takes one weight per upstream, in the order of
    `upstreams`: canary percent `w` puts `w` at the canary upstream's position and `100 - w`
    at stable's (0 takes an upstream out of the rotation); other upstreams keep theirs, and
    the percent reported is the canary's share of the two. One PATCH changes the whole list,
    so there is no intermediate split, and Caddy applies a config change as a whole or not at
    all: a refused change leaves the running config as it was.
    """

    def __init__(self, spec: CaddyRouter) -> None:
        self.spec = spec
        self._url = f"http://{spec.admin_address}/id/{spec.handler_id}"
        self._where = f"Caddy at {spec.admin_address} handler {spec.handler_id}"

    # --- TrafficRouter ------------------------------------------------------------------

    async def preflight(self) -> TrafficState:
        """The admin API answers, the handler is a weighted `reverse_proxy` with both upstreams,
        and all traffic is on stable. Changes nothing."""
        async with self._client() as client:
            handler = await self._handler(client)
        stable, canary = self._pair(handler)
        if stable == 0 or canary > 0:
            raise self._unexpected_split(stable, canary)
        state = self._state(handler)
        state.detail = f"{self._where}: {state.detail}"
        return state

    async def read_weights(self) -> TrafficState:
        """The split in Caddy's running config."""
        async with self._client() as client:
            return self._state(await self._handler(client, canary_required=False))

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """PATCH the weights list and read the handler back."""
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        async with self._client() as client:
            # A rollback (canary 0) still works after the canary's upstream was removed.
            handler = await self._handler(client, canary_required=canary_weight > 0)
            wanted = {
                self.spec.stable_upstream: 100 - canary_weight,
                self.spec.canary_upstream: canary_weight,
            }
            weights = [
                wanted.get(dial, weight) for dial, weight in zip(_dials(handler), _list(handler), strict=True)
            ]
            response = await send(
                client,
                "PATCH",
                f"{self._url}/load_balancing/selection_policy/weights",
                self._where,
                json=weights,
            )
            if response.status_code >= 500 and "loading new config" not in response.text:
                raise self._error(response, errors.ROUTER_UNREACHABLE, retryable=True)
            if response.status_code != 200:
                raise self._error(response, errors.ROUTER_REJECTED, retryable=False)
            read = await self._handler(client, canary_required=canary_weight > 0)
        stable, canary = self._pair(read)
        if (stable, canary) != (100 - canary_weight, canary_weight):
            raise ApplicationError(
                f"{self._where}: set weights stable={100 - canary_weight} canary={canary_weight} but "
                f"read back stable={stable} canary={canary}; another client may be changing the config",
                type=errors.TRAFFIC_NOT_APPLIED,
            )
        return self._state(read)

    # --- the admin API --------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.spec.timeout.total_seconds())

    async def _handler(self, client: httpx.AsyncClient, canary_required: bool = True) -> dict[str, Any]:
        """The handler's JSON, checked to be a `reverse_proxy` weighting both upstreams (stable
        only, unless `canary_required`)."""
        response = await send(client, "GET", self._url, self._where)
        if response.status_code == 404 and "unknown object ID" in response.text:
            raise config_error(
                f'{self._where}: Caddy\'s config has no object with "@id": {self.spec.handler_id!r}; '
                "add it to the reverse_proxy handler (see docs/spec.md)"
            )
        if response.status_code >= 500:
            raise self._error(response, errors.ROUTER_UNREACHABLE, retryable=True)
        if response.status_code != 200:
            raise self._error(response, errors.ROUTER_REJECTED, retryable=False)
        handler = json_of(response, self._where)
        if not isinstance(handler, dict) or handler.get("handler") != "reverse_proxy":
            kind = handler.get("handler") if isinstance(handler, dict) else type(handler).__name__
            raise config_error(f"{self._where}: the object is {kind!r}, not a reverse_proxy handler")
        policy = handler.get("load_balancing", {}).get("selection_policy", {})
        if policy.get("policy") != _POLICY:
            raise config_error(
                f"{self._where}: the load balancing policy is {policy.get('policy', 'random (default)')!r}; "
                f'set `lb_policy {_POLICY}` (selection_policy {{"policy": "{_POLICY}"}}) with a weight '
                "per upstream"
            )
        dials = _dials(handler)
        needed = (self.spec.stable_upstream, self.spec.canary_upstream)[: 2 if canary_required else 1]
        missing = [d for d in needed if d not in dials]
        if missing:
            raise config_error(
                f"{self._where}: no upstream dials {', '.join(missing)} (upstreams: {', '.join(dials)}); "
                "list both versions in the handler's upstreams"
            )
        if len(_list(handler)) != len(dials):
            raise config_error(
                f"{self._where}: {len(_list(handler))} weights for {len(dials)} upstreams; "
                "weighted_round_robin needs one weight per upstream"
            )
        return handler

    def _error(self, response: httpx.Response, code: str, *, retryable: bool) -> ApplicationError:
        return ApplicationError(
            cap(f"{self._where}: Caddy answered {response.status_code}: {body_of(response)}"),
            type=code,
            non_retryable=not retryable,
        )

    # --- results --------------------------------------------------------------------------------

    def _pair(self, handler: dict[str, Any]) -> tuple[int, int]:
        weights = dict(zip(_dials(handler), _list(handler), strict=True))
        return weights[self.spec.stable_upstream], weights.get(self.spec.canary_upstream, 0)

    def _state(self, handler: dict[str, Any]) -> TrafficState:
        stable, canary = self._pair(handler)
        others = [
            f" {dial}={w}"
            for dial, w in zip(_dials(handler), _list(handler), strict=True)
            if dial not in (self.spec.stable_upstream, self.spec.canary_upstream)
        ]
        detail = f"weights {self.spec.stable_upstream}={stable} {self.spec.canary_upstream}={canary}"
        detail += f" (other upstreams keep their weights:{''.join(others)})" if others else ""
        if stable + canary == 0:
            return TrafficState(stable_weight=0, canary_weight=0, detail=f"both weights are 0: {detail}")
        canary_pct = round(100 * canary / (stable + canary))
        return TrafficState(stable_weight=100 - canary_pct, canary_weight=canary_pct, detail=detail)

    def _unexpected_split(self, stable: int, canary: int) -> ApplicationError:
        s, c = self.spec.stable_upstream, self.spec.canary_upstream
        if stable == 0 and canary > 0:
            fix = "if the canary upstream runs the live version, swap stable_upstream and canary_upstream"
        else:
            fix = f"give {s} weight 100 and {c} weight 0 first"
        return ApplicationError(
            cap(
                f"{self._where}: found {s}={stable} {c}={canary}, but a rollout starts with all "
                f"traffic on stable_upstream; {fix}"
            ),
            type=errors.UNEXPECTED_SPLIT,
            non_retryable=True,
        )


def _dials(handler: dict[str, Any]) -> list[str]:
    return [str(u.get("dial", "")) for u in handler.get("upstreams") or []]


def _list(handler: dict[str, Any]) -> list[int]:
    weights = handler.get("load_balancing", {}).get("selection_policy", {}).get("weights") or []
    return [int(w) for w in weights]
