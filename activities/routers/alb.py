"""ALB router: weights two target groups in a listener's forward action (default action or one rule)."""

from __future__ import annotations

import copy
from typing import Any

from temporalio.exceptions import ApplicationError

from sluice.activities.aws import call
from sluice.contracts import errors
from sluice.contracts.calls import TrafficState
from sluice.contracts.spec import ALBRouter
from sluice.contracts.text import cap


class ALBTrafficRouter:
    """Sets `ForwardConfig.TargetGroups` weights: canary `w`, stable `100 - w` (ALB allows 0-999).

    Everything else in the listener's (or rule's) actions is sent back as it was read:
    other actions, the stickiness config, and any other target groups with their weights.
    The percent reported is the canary's share of the two groups' weights; a third group
    keeps its own share, which the detail shows. One `ModifyListener` / `ModifyRule` call
    changes both weights at once, so there is no intermediate split.
    """

    def __init__(self, spec: ALBRouter) -> None:
        self.spec = spec
        self._region = spec.aws_region
        self._where = f"ALB {spec.rule_arn or spec.listener_arn}"

    # --- TrafficRouter ------------------------------------------------------------------

    async def preflight(self) -> TrafficState:
        """Both target groups exist, are in the forward action and have a healthy target."""
        actions = await self._actions()
        groups = _groups(self._forward(actions)[1])
        for role, arn in self._roles():
            try:
                await self._call("describe_target_groups", TargetGroupArns=[arn])
            except ApplicationError as err:
                if err.type != errors.ROUTER_CONFIG:
                    raise
                raise self._config(
                    f"the {role} target group {_short(arn)} does not exist: {err.message}"
                ) from None
            if arn not in {g["TargetGroupArn"] for g in groups}:
                raise self._config(
                    f"the {role} target group {_short(arn)} is not in the forward action; add it "
                    "(weight 0 for the canary) to the listener's forward action before the rollout"
                )
            health = await self._call("describe_target_health", TargetGroupArn=arn)
            states = [
                d.get("TargetHealth", {}).get("State", "unknown") for d in health["TargetHealthDescriptions"]
            ]
            if "healthy" not in states:
                raise self._config(
                    f"the {role} target group {_short(arn)} has no healthy target "
                    f"(states: {', '.join(states) or 'no targets registered'}); fix it before shifting "
                    "traffic"
                )
        state = self._state(groups)
        state.detail = f"{self._where}: {state.detail}"
        return state

    async def read_weights(self) -> TrafficState:
        """The current split from the forward action."""
        return self._state(_groups(self._forward(await self._actions())[1]))

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Rewrite the forward action's weights in one call and read them back."""
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {canary_weight}")
        actions = await self._actions()
        index, forward = self._forward(actions)
        wanted = {
            self.spec.stable_target_group_arn: 100 - canary_weight,
            self.spec.canary_target_group_arn: canary_weight,
        }
        groups = [
            {**g, "Weight": wanted.pop(g["TargetGroupArn"], g.get("Weight", 1))} for g in _groups(forward)
        ]
        groups += [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in wanted.items()]
        new = copy.deepcopy(forward)
        new.pop("TargetGroupArn", None)  # only valid next to a ForwardConfig with one group
        new["ForwardConfig"] = {**new.get("ForwardConfig", {}), "TargetGroups": groups}
        actions = [*actions[:index], new, *actions[index + 1 :]]
        if self.spec.rule_arn:
            await self._call("modify_rule", RuleArn=self.spec.rule_arn, Actions=actions)
        else:
            await self._call("modify_listener", ListenerArn=self.spec.listener_arn, DefaultActions=actions)

        read = _groups(self._forward(await self._actions())[1])
        weights = {g["TargetGroupArn"]: g.get("Weight", 1) for g in read}
        stable = weights.get(self.spec.stable_target_group_arn, 0)
        canary = weights.get(self.spec.canary_target_group_arn, 0)
        if (stable, canary) != (100 - canary_weight, canary_weight):
            raise ApplicationError(
                f"{self._where}: set weights stable={100 - canary_weight} canary={canary_weight} but read "
                f"back stable={stable} canary={canary}; another client may be changing the listener",
                type=errors.TRAFFIC_NOT_APPLIED,
            )
        return self._state(read)

    # --- ELBv2 ----------------------------------------------------------------------------

    def _roles(self) -> list[tuple[str, str]]:
        return [("stable", self.spec.stable_target_group_arn), ("canary", self.spec.canary_target_group_arn)]

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return await call("elbv2", self._region, operation, self._where, **params)

    async def _actions(self) -> list[dict[str, Any]]:
        if self.spec.rule_arn:
            rules = (await self._call("describe_rules", RuleArns=[self.spec.rule_arn]))["Rules"]
            return list(rules[0]["Actions"]) if rules else []
        listeners = (await self._call("describe_listeners", ListenerArns=[self.spec.listener_arn]))[
            "Listeners"
        ]
        return list(listeners[0]["DefaultActions"]) if listeners else []

    def _forward(self, actions: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        for index, action in enumerate(actions):
            if action.get("Type") == "forward":
                return index, action
        kinds = ", ".join(a.get("Type", "?") for a in actions) or "none"
        raise self._config(
            f"has no forward action (actions: {kinds}); Sluice weights the target groups of a forward action"
        )

    def _state(self, groups: list[dict[str, Any]]) -> TrafficState:
        weights = {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
        stable = weights.pop(self.spec.stable_target_group_arn, 0)
        canary = weights.pop(self.spec.canary_target_group_arn, 0)
        others = "".join(f" {_short(arn)}={w}" for arn, w in weights.items())
        detail = f"weights {_short(self.spec.stable_target_group_arn)}={stable} "
        detail += f"{_short(self.spec.canary_target_group_arn)}={canary}"
        detail += f" (other target groups keep their weights:{others})" if others else ""
        if stable + canary == 0:
            return TrafficState(
                stable_weight=0, canary_weight=0, detail=f"both groups have weight 0: {detail}"
            )
        canary_pct = round(100 * canary / (stable + canary))
        return TrafficState(stable_weight=100 - canary_pct, canary_weight=canary_pct, detail=detail)

    def _config(self, why: str) -> ApplicationError:
        return ApplicationError(cap(f"{self._where}: {why}"), type=errors.ROUTER_CONFIG, non_retryable=True)


def _groups(action: dict[str, Any]) -> list[dict[str, Any]]:
    """The weighted groups of a forward action (the short form `TargetGroupArn` is one group)."""
    groups = action.get("ForwardConfig", {}).get("TargetGroups")
    if groups:
        return [dict(g) for g in groups]
    if action.get("TargetGroupArn"):
        return [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
    return []


def _short(arn: str) -> str:
    """`targetgroup/checkout-v2/73e2d6bc24d8a067` -> `checkout-v2`."""
    return arn.rsplit(":targetgroup/", 1)[-1].split("/")[0]
