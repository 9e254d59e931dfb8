"""Route 53 router: the weights of two weighted records (same name and type, different SetIdentifier)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.exceptions import ApplicationError

from sluice.activities.aws import call
from sluice.contracts import errors
from sluice.contracts.calls import TrafficState
from sluice.contracts.spec import Route53Router
from sluice.contracts.text import cap

_INSYNC_WAIT = 10.0
"""How long to poll `GetChange` for INSYNC; the change is applied in the API either way."""


class Route53TrafficRouter:
    """Canary percent `w` becomes record weights canary `w`, stable `100 - w` (Route 53 allows 0-255).

    Both records are UPSERTed in one change batch, which Route 53 applies atomically, with
    every other field of each record (TTL, values or alias target, health check) as it was
    read. Resolvers keep answering from their cache until the records' TTL runs out, so
    the spec's `wait_after_change` is slept after each change; longer TTLs belong in
    `pause` steps.
    """

    def __init__(self, spec: Route53Router) -> None:
        self.spec = spec
        self._zone = spec.hosted_zone_id.removeprefix("/hostedzone/")
        self._where = f"Route 53 {spec.record_name} {spec.record_type} in zone {self._zone}"

    async def preflight(self) -> TrafficState:
        """The zone and both weighted records exist. Changes nothing."""
        state = await self.read_weights()
        state.detail = f"{self._where}: {state.detail}"
        return state

    async def read_weights(self) -> TrafficState:
        """The split from the two records' weights."""
        stable, canary = await self._records()
        return _state(int(stable.get("Weight", 0)), int(canary.get("Weight", 0)))

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """UPSERT both records' weights in one batch, wait for INSYNC and the TTL wait, read back."""
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        stable, canary = await self._records()
        changes = [
            {"Action": "UPSERT", "ResourceRecordSet": {**record, "Weight": weight}}
            for record, weight in ((stable, 100 - canary_weight), (canary, canary_weight))
        ]
        reply = await self._call(
            "change_resource_record_sets",
            HostedZoneId=self._zone,
            ChangeBatch={"Comment": f"sluice: canary {canary_weight}%", "Changes": changes},
        )
        status = await self._wait_insync(reply["ChangeInfo"])
        if self.spec.wait_after_change.total_seconds() > 0:
            await asyncio.sleep(self.spec.wait_after_change.total_seconds())
        stable, canary = await self._records()
        got = (int(stable.get("Weight", 0)), int(canary.get("Weight", 0)))
        if got != (100 - canary_weight, canary_weight):
            raise ApplicationError(
                f"{self._where}: set weights stable={100 - canary_weight} canary={canary_weight} but read "
                f"back stable={got[0]} canary={got[1]}; another client may be changing the records",
                type=errors.TRAFFIC_NOT_APPLIED,
            )
        state = _state(*got)
        state.detail += f", change {status}"
        return state

    # --- Route 53 -------------------------------------------------------------------------

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return await call("route53", None, operation, self._where, **params)

    async def _records(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The stable and the canary record, as Route 53 returns them."""
        wanted = _normal(self.spec.record_name)
        found: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] = {
            "HostedZoneId": self._zone,
            "StartRecordName": self.spec.record_name,
            "StartRecordType": self.spec.record_type,
        }
        while True:
            page = await self._call("list_resource_record_sets", **params)
            for record in page.get("ResourceRecordSets", []):
                if _normal(record["Name"]) != wanted or record["Type"] != self.spec.record_type:
                    break
                if "SetIdentifier" in record:
                    found[record["SetIdentifier"]] = record
            else:
                if page.get("IsTruncated"):
                    params["StartRecordName"] = page["NextRecordName"]
                    params["StartRecordType"] = page["NextRecordType"]
                    if "NextRecordIdentifier" in page:
                        params["StartRecordIdentifier"] = page["NextRecordIdentifier"]
                    continue
            break
        records = []
        for role, ident in (
            ("stable", self.spec.stable_set_identifier),
            ("canary", self.spec.canary_set_identifier),
        ):
            record = found.get(ident)
            if record is None:
                have = ", ".join(sorted(found)) or "none"
                raise ApplicationError(
                    cap(
                        f"{self._where}: no weighted record with SetIdentifier {ident!r} ({role}); records "
                        f"with this name and type: {have}. Create both weighted records before the rollout"
                    ),
                    type=errors.ROUTER_CONFIG,
                    non_retryable=True,
                )
            if "Weight" not in record:
                raise ApplicationError(
                    f"{self._where}: record {ident!r} is not a weighted record (it has no Weight)",
                    type=errors.ROUTER_CONFIG,
                    non_retryable=True,
                )
            records.append(record)
        return records[0], records[1]

    async def _wait_insync(self, info: dict[str, Any]) -> str:
        deadline = time.monotonic() + _INSYNC_WAIT
        status = str(info.get("Status", "PENDING"))
        while status != "INSYNC" and time.monotonic() < deadline:
            await asyncio.sleep(1)
            status = str((await self._call("get_change", Id=info["Id"]))["ChangeInfo"]["Status"])
        return status


def _normal(name: str) -> str:
    return name.lower().rstrip(".").replace("\\052", "*")


def _state(stable: int, canary: int) -> TrafficState:
    detail = f"weights stable={stable} canary={canary}"
    if stable + canary == 0:
        # Route 53 answers with every record equally when all weights are 0.
        return TrafficState(
            stable_weight=50, canary_weight=50, detail=f"{detail} (both 0: Route 53 splits evenly)"
        )
    canary_pct = round(100 * canary / (stable + canary))
    return TrafficState(stable_weight=100 - canary_pct, canary_weight=canary_pct, detail=detail)
