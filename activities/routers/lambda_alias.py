"""Lambda alias router: `RoutingConfig.AdditionalVersionWeights` from the stable version to the new one."""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from sluice.activities.aws import call
from sluice.contracts import errors
from sluice.contracts.calls import TrafficState
from sluice.contracts.spec import LambdaAliasRouter
from sluice.contracts.text import cap


class LambdaAliasTrafficRouter:
    """Declarative alias states, so a retry or a rollback after a promotion is always safe.

    - 0%: the alias points at the stable version, no additional weights.
    - 1-99%: the alias points at the stable version and sends `w/100` to the new version.
    - 100% (promotion): the alias points at the new version, no additional weights.
    """

    def __init__(self, spec: LambdaAliasRouter) -> None:
        self.spec = spec
        self._region = spec.aws_region
        self._where = f"Lambda alias {spec.function_name}:{spec.alias}"

    async def preflight(self) -> TrafficState:
        """The alias and both versions exist, and the alias points at one of them."""
        for role, version in (
            ("stable", self.spec.stable_function_version),
            ("canary", self.spec.canary_function_version),
        ):
            try:
                await self._call(
                    "get_function_configuration", FunctionName=self.spec.function_name, Qualifier=version
                )
            except ApplicationError as err:
                if err.type != errors.ROUTER_CONFIG:
                    raise
                raise self._config(
                    f"the {role} version {version} of {self.spec.function_name} does not exist "
                    f"(publish it with `aws lambda publish-version`): {err.message}"
                ) from None
        state = await self.read_weights()
        state.detail = f"{self._where}: {state.detail}"
        return state

    async def read_weights(self) -> TrafficState:
        """The split from the alias' FunctionVersion and RoutingConfig."""
        return self._state(await self._alias())

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Update the alias in one call and read it back."""
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        if canary_weight == 100:
            primary, extra = self.spec.canary_function_version, {}
        else:
            primary = self.spec.stable_function_version
            extra = {self.spec.canary_function_version: canary_weight / 100} if canary_weight else {}
        await self._call(
            "update_alias",
            FunctionName=self.spec.function_name,
            Name=self.spec.alias,
            FunctionVersion=primary,
            RoutingConfig={"AdditionalVersionWeights": extra},
        )
        state = self._state(await self._alias())
        if state.canary_weight != canary_weight:
            raise ApplicationError(
                f"{self._where}: set canary {canary_weight}% but read back {state.detail}; "
                "another client may be changing the alias",
                type=errors.TRAFFIC_NOT_APPLIED,
            )
        return state

    # --- Lambda ---------------------------------------------------------------------------

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return await call("lambda", self._region, operation, self._where, **params)

    async def _alias(self) -> dict[str, Any]:
        return await self._call("get_alias", FunctionName=self.spec.function_name, Name=self.spec.alias)

    def _state(self, alias: dict[str, Any]) -> TrafficState:
        primary = str(alias.get("FunctionVersion"))
        extra = {
            str(k): float(v)
            for k, v in ((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}).items()
        }
        detail = f"alias -> version {primary}" + "".join(f", {v:g} to version {k}" for k, v in extra.items())
        stable, canary = self.spec.stable_function_version, self.spec.canary_function_version
        unknown = set(extra) - {canary}
        if primary == canary and not extra:
            return TrafficState(stable_weight=0, canary_weight=100, detail=detail)
        if primary == stable and not unknown:
            canary_pct = round(100 * extra.get(canary, 0.0))
            return TrafficState(stable_weight=100 - canary_pct, canary_weight=canary_pct, detail=detail)
        raise self._config(
            f"the alias is in a state Sluice did not set ({detail}); expected version {stable} "
            f"(stable) or {canary} (canary) as its primary; point it at {stable} by hand first"
        )

    def _config(self, why: str) -> ApplicationError:
        return ApplicationError(cap(f"{self._where}: {why}"), type=errors.ROUTER_CONFIG, non_retryable=True)
