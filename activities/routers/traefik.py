"""Traefik router: a weighted round-robin service in a file-provider file Sluice owns, read back
through Traefik's API."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from temporalio.exceptions import ApplicationError

from sluice.activities.routers._files import config_error, read_owned, replace_owned
from sluice.activities.routers._http import body_of, json_of, send
from sluice.contracts import errors
from sluice.contracts.calls import TrafficState
from sluice.contracts.spec import TraefikRouter
from sluice.contracts.text import cap

_POLL = 0.05
HEADER = (
    "# Owned by Sluice (router type traefik): rewritten at every rollout step; change the spec,\n"
    "# not this file. Keep routers and the two services it weights in another file.\n"
)


class TraefikTrafficRouter:
    """Weights `stable_service` and `canary_service` in the weighted service `service`.

    Canary percent `w` becomes weight `w` on the canary service and `100 - w` on stable
    (Traefik takes weight 0 as "no requests"), both in one file write, so there is no
    intermediate split. Traefik's file watch loads the file on its own, after up to its
    `providersThrottleDuration` (2s by default); the change counts only once Traefik's API
    (`/api/http/services/<service>@file`) serves the new weights, with the service enabled.

    Traefik applies a weighted service that names a missing service and then answers 404 on
    every route using it, so both services are checked through the API before the file is
    written, and a file Traefik reports in error is replaced by the previous one at once.
    """

    def __init__(self, spec: TraefikRouter) -> None:
        self.spec = spec
        self._file = Path(spec.dynamic_file)
        self._api = spec.api_url.rstrip("/")
        self._where = f"Traefik service {spec.service}@file"

    # --- TrafficRouter ------------------------------------------------------------------

    async def preflight(self) -> TrafficState:
        """Traefik answers, both services exist, the weighted service is loaded from the file and
        enabled, and all traffic is on stable. Changes nothing."""
        async with self._client() as client:
            await self._services_exist(client)
            loaded = await self._weighted(client)
        self._owned_text()
        stable, canary = self._weights(loaded)
        if stable == 0 or canary > 0:
            raise self._unexpected_split(stable, canary)
        state = self._state(loaded)
        state.detail = f"{self._where} at {self._api}: {state.detail}"
        return state

    async def read_weights(self) -> TrafficState:
        """The split Traefik serves, from its API (not from the file, which it may not have loaded)."""
        async with self._client() as client:
            return self._state(await self._weighted(client))

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Write the file and wait until Traefik's API serves the new weights.

        ROUTER_CONFIG if a service is missing (nothing written); ROUTER_REJECTED if Traefik
        loads the file in error (the previous file is written back); TRAFFIC_NOT_APPLIED,
        retryable, if Traefik has not loaded it within `timeout` (is the file watched?).
        """
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        wanted = (100 - canary_weight, canary_weight)
        deadline = time.monotonic() + self.spec.timeout.total_seconds()
        async with self._client() as client:
            omit = await self._services_exist(client, *wanted)
            old_text = self._owned_text()
            new_text = self.render(*wanted, omit=omit)
            if new_text != old_text:
                replace_owned(self._file, new_text, self._where)
            while True:
                loaded = await self._find_weighted(client)
                if loaded is not None and loaded.get("status") != "enabled":
                    if self._weights(loaded, strict=False) == wanted and new_text != old_text:
                        replace_owned(self._file, old_text, self._where)
                        raise ApplicationError(
                            cap(
                                f"{self._where}: Traefik loaded the new weights in error, so the "
                                f"previous file is back: {'; '.join(loaded.get('error') or [])}"
                            ),
                            type=errors.ROUTER_REJECTED,
                            non_retryable=True,
                        )
                elif loaded is not None and self._weights(loaded, strict=False) == wanted:
                    return self._state(loaded)
                if time.monotonic() >= deadline:
                    found = "no such service" if loaded is None else self._state(loaded).detail
                    raise ApplicationError(
                        cap(
                            f"{self._where}: wrote {self._file} but Traefik still serves {found} "
                            f"after {self.spec.timeout.total_seconds():g}s; is the file in the file "
                            "provider's watched directory (providers.file.watch)?"
                        ),
                        type=errors.TRAFFIC_NOT_APPLIED,
                    )
                await asyncio.sleep(_POLL)

    # --- the file -------------------------------------------------------------------------------

    def render(self, stable: int, canary: int, omit: tuple[str, ...] = ()) -> str:
        """The whole file: one weighted service. Names are JSON-quoted (valid YAML), and the
        spec's patterns keep them plain anyway. Services in `omit` (missing ones at weight 0)
        are left out: Traefik would refuse the weighted service if it named them."""
        q = json.dumps
        entries = [
            f"          - name: {q(name)}\n            weight: {weight}\n"
            for name, weight in ((self.spec.stable_service, stable), (self.spec.canary_service, canary))
            if name not in omit
        ]
        return (
            HEADER
            + "http:\n  services:\n"
            + f"    {q(self.spec.service)}:\n      weighted:\n        services:\n"
            + "".join(entries)
        )

    def _owned_text(self) -> str:
        return read_owned(
            self._file,
            self._where,
            "create it in the file provider's directory with the weighted service "
            f"(stable weight 100, canary 0; see docs/spec.md), e.g. {self.render(100, 0)!r}",
        )

    # --- Traefik's API --------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.spec.timeout.total_seconds())

    async def _get(self, client: httpx.AsyncClient, service: str) -> dict[str, Any] | None:
        """`/api/http/services/<service>` (None if Traefik has no such service)."""
        name = service if "@" in service else f"{service}@file"
        url = f"{self._api}/api/http/services/{quote(name, safe='@')}"
        response = await send(client, "GET", url, self._where)
        if response.status_code == 404 and "service not found" in response.text:
            return None
        if response.status_code == 404:  # another server, or Traefik without its API here
            raise config_error(
                f"{self._where}: {url} answers {body_of(response, 40)!r}; is Traefik's API (--api) "
                f"served at {self._api}?"
            )
        if response.status_code != 200:
            raise self._api_error(response)
        found = json_of(response, self._where)
        if not isinstance(found, dict):
            raise self._api_error(response)
        return found

    async def _services_exist(
        self, client: httpx.AsyncClient, stable: int = 1, canary: int = 1
    ) -> tuple[str, ...]:
        """The services that get no traffic and that Traefik does not have (to leave out of the
        file); ROUTER_CONFIG if one that should get traffic is missing.

        A rollback (canary 0) thus still works after the new version's service was removed.
        """
        missing: list[str] = []
        for role, name, weight in (
            ("stable", self.spec.stable_service, stable),
            ("canary", self.spec.canary_service, canary),
        ):
            if await self._get(client, name) is not None:
                continue
            if weight == 0:
                missing.append(name)
                continue
            raise config_error(
                f"{self._where}: Traefik has no {role} service {name!r}; a weighted service naming "
                "it would make every route using it answer 404, so nothing was written"
            )
        return tuple(missing)

    async def _find_weighted(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        found = await self._get(client, self.spec.service)
        if found is not None and "weighted" not in found:
            raise config_error(f"{self._where}: the service is a {found.get('type')}, not a weighted service")
        return found

    async def _weighted(self, client: httpx.AsyncClient) -> dict[str, Any]:
        found = await self._find_weighted(client)
        if found is None:
            raise config_error(
                f"{self._where}: Traefik has not loaded the weighted service; write {self._file} in "
                "the file provider's watched directory (see docs/spec.md) before the rollout"
            )
        return found

    def _weights(self, loaded: dict[str, Any], strict: bool = True) -> tuple[int, int]:
        """(stable, canary) weights; ROUTER_CONFIG (if `strict`) when the service names others."""
        weights: dict[str, int] = {}
        for entry in loaded.get("weighted", {}).get("services") or []:
            weights[str(entry.get("name", "")).removesuffix("@file")] = int(entry.get("weight", 1))
        stable = weights.pop(self.spec.stable_service.removesuffix("@file"), None)
        canary = weights.pop(self.spec.canary_service.removesuffix("@file"), None)
        # One of the two may be absent (left out at weight 0 when Traefik lacks it).
        if strict and ((stable is None and canary is None) or weights):
            raise config_error(
                f"{self._where}: Traefik's weighted service holds {sorted(weights) or 'neither'} "
                f"besides or instead of {self.spec.stable_service!r} and {self.spec.canary_service!r}; "
                f"Sluice owns {self._file}: write it as the spec says"
            )
        return stable or 0, canary or 0

    def _api_error(self, response: httpx.Response) -> ApplicationError:
        return ApplicationError(
            cap(f"{self._where}: {response.request.url} answered {body_of(response)}"),
            type=errors.ROUTER_UNREACHABLE if response.status_code >= 500 else errors.ROUTER_REJECTED,
            non_retryable=response.status_code < 500,
        )

    # --- results --------------------------------------------------------------------------------

    def _state(self, loaded: dict[str, Any]) -> TrafficState:
        stable, canary = self._weights(loaded)
        detail = f"weights {self.spec.stable_service}={stable} {self.spec.canary_service}={canary}"
        if stable + canary == 0:
            return TrafficState(stable_weight=0, canary_weight=0, detail=f"both weights are 0: {detail}")
        canary_pct = round(100 * canary / (stable + canary))
        return TrafficState(stable_weight=100 - canary_pct, canary_weight=canary_pct, detail=detail)

    def _unexpected_split(self, stable: int, canary: int) -> ApplicationError:
        s, c = self.spec.stable_service, self.spec.canary_service
        if stable == 0 and canary > 0:
            fix = "if the canary service runs the live version, swap stable_service and canary_service"
        else:
            fix = f"write {self._file} with {s} weight 100 and {c} weight 0 first"
        return ApplicationError(
            cap(
                f"{self._where}: found {s}={stable} {c}={canary}, but a rollout starts with all "
                f"traffic on stable_service; {fix}"
            ),
            type=errors.UNEXPECTED_SPLIT,
            non_retryable=True,
        )
