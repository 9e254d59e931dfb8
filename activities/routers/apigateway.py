"""API Gateway router: a REST API stage's canary settings (`percentTraffic` to the canary deployment)."""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from sluice.activities.aws import call
from sluice.contracts import errors
from sluice.contracts.calls import TrafficState
from sluice.contracts.spec import ApiGatewayRouter
from sluice.contracts.text import cap


class ApiGatewayTrafficRouter:
    """Declarative stage states, each set by one `UpdateStage` call and read back:

    - 0% (rollback): the stage serves the stable deployment; the canary's percentTraffic is
      set to 0 and the canary settings are removed.
    - 1-99%: the stage serves the stable deployment, with canary settings sending `w`
      percent to the canary deployment.
    - 100% (promotion): the stage serves the canary deployment, canary settings removed.
    """

    def __init__(self, spec: ApiGatewayRouter) -> None:
        self.spec = spec
        self._region = spec.aws_region
        self._where = f"API Gateway stage {spec.rest_api_id}/{spec.stage}"

    async def preflight(self) -> TrafficState:
        """The stage and both deployments exist, and the stage serves one of them."""
        state = await self.read_weights()
        for role, deployment in (
            ("stable", self.spec.stable_deployment_id),
            ("canary", self.spec.canary_deployment_id),
        ):
            try:
                await self._call("get_deployment", restApiId=self.spec.rest_api_id, deploymentId=deployment)
            except ApplicationError as err:
                if err.type != errors.ROUTER_CONFIG:
                    raise
                raise self._config(
                    f"the {role} deployment {deployment} does not exist in REST API "
                    f"{self.spec.rest_api_id}: {err.message}"
                ) from None
        state.detail = f"{self._where}: {state.detail}"
        return state

    async def read_weights(self) -> TrafficState:
        """The split from the stage's deploymentId and canarySettings."""
        return self._state(await self._stage())

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Patch the stage to the declared state in one call, then read it back."""
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        stage = await self._stage()
        has_canary = bool(stage.get("canarySettings"))
        ops: list[dict[str, str]]
        if canary_weight == 100:
            ops = [{"op": "replace", "path": "/deploymentId", "value": self.spec.canary_deployment_id}]
            ops += [{"op": "remove", "path": "/canarySettings"}] if has_canary else []
        elif canary_weight == 0:
            ops = [{"op": "replace", "path": "/deploymentId", "value": self.spec.stable_deployment_id}]
            if has_canary:
                ops += [
                    {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "0"},
                    {"op": "remove", "path": "/canarySettings"},
                ]
        else:
            ops = [
                {"op": "replace", "path": "/deploymentId", "value": self.spec.stable_deployment_id},
                {
                    "op": "replace",
                    "path": "/canarySettings/deploymentId",
                    "value": self.spec.canary_deployment_id,
                },
                {"op": "replace", "path": "/canarySettings/percentTraffic", "value": str(canary_weight)},
            ]
        await self._call(
            "update_stage", restApiId=self.spec.rest_api_id, stageName=self.spec.stage, patchOperations=ops
        )
        state = self._state(await self._stage())
        if state.canary_weight != canary_weight:
            raise ApplicationError(
                f"{self._where}: set canary {canary_weight}% but read back {state.detail}; "
                "another client may be changing the stage",
                type=errors.TRAFFIC_NOT_APPLIED,
            )
        return state

    # --- API Gateway ----------------------------------------------------------------------

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return await call("apigateway", self._region, operation, self._where, **params)

    async def _stage(self) -> dict[str, Any]:
        return await self._call("get_stage", restApiId=self.spec.rest_api_id, stageName=self.spec.stage)

    def _state(self, stage: dict[str, Any]) -> TrafficState:
        serving = stage.get("deploymentId")
        canary_settings = stage.get("canarySettings") or {}
        percent = float(canary_settings.get("percentTraffic", 0) or 0)
        canary_to = canary_settings.get("deploymentId")
        detail = f"stage serves deployment {serving}"
        if canary_settings:
            detail += f", canary {percent:g}% to deployment {canary_to}"
        stable, canary = self.spec.stable_deployment_id, self.spec.canary_deployment_id
        if serving == canary and percent == 0:
            return TrafficState(stable_weight=0, canary_weight=100, detail=detail)
        if serving == stable and (percent == 0 or canary_to == canary):
            canary_pct = round(percent)
            return TrafficState(stable_weight=100 - canary_pct, canary_weight=canary_pct, detail=detail)
        raise self._config(
            f"the stage is in a state Sluice did not set ({detail}); expected deployment {stable} "
            f"(stable) or {canary} (canary); point the stage at {stable} by hand first"
        )

    def _config(self, why: str) -> ApplicationError:
        return ApplicationError(cap(f"{self._where}: {why}"), type=errors.ROUTER_CONFIG, non_retryable=True)
