"""The rollout and ring specs: steps as run, the digest a CI re-run recognises, ring expansion."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from sluice.contracts.durations import Duration, format_duration
from sluice.contracts.notify import NotifyTarget
from sluice.contracts.spec.base import (
    MetricName,
    PositiveDuration,
    ServiceName,
    SpecModel,
    VersionLabel,
    located,
)
from sluice.contracts.spec.errors import issue_of
from sluice.contracts.spec.metrics import AnalysisSpec, PrometheusMetric
from sluice.contracts.spec.routers import RouterSpec, traffic_targets_of
from sluice.contracts.spec.steps import (
    ApprovalSpec,
    ExponentialPreset,
    PauseSpec,
    PresetName,
    Step,
    named_preset_steps,
)

MAX_STEPS = 200
"""Steps a spec may list: a weight per percent with a bake between fits, and a history stays small."""


class PrePromotionSpec(SpecModel):
    """Blue/green: analysis against green before it gets any user traffic (e.g. on a preview URL)."""

    duration: Duration
    """At least this long before the switch; the analysis runs every interval meanwhile."""
    analysis: AnalysisSpec | None = None
    """The analysis run against green meanwhile (e.g. an http metric on a preview URL)."""

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("pre_promotion.duration must be longer than 0s")
        return value


# Fields that came after the first specs: left out of the digest when unset, so a spec that
# does not use them keeps the digest it always had (a CI re-run still attaches to its rollout).
_NEW_TOP_LEVEL = ("strategy", "preset", "pre_promotion", "post_promotion", "scale_down_delay")
_NEW_STEP_KEYS = ("approval", "watch")
_NEW_METRIC_DEFAULTS: dict[str, dict[str, object]] = {
    "cloudwatch": {"compare": None, "alpha": 0.01, "tolerance": 0.1, "stable_dimensions": {}},
}
"""Metric fields added after a provider shipped, with their defaults: left out of the digest."""
_NEW_ANALYSIS_DEFAULTS: dict[str, object] = {"on_drift": "reapply"}
"""Analysis fields added after it shipped, with their defaults: left out of the digest."""


def _drop_new_analysis_defaults(data: object) -> None:
    """Remove `_NEW_ANALYSIS_DEFAULTS` from every analysis (a dict with `metrics`) in `data`."""
    if isinstance(data, dict):
        if "metrics" in data:
            for key, default in _NEW_ANALYSIS_DEFAULTS.items():
                if data.get(key) == default:
                    data.pop(key, None)
        for value in data.values():
            _drop_new_analysis_defaults(value)
    elif isinstance(data, list):
        for value in data:
            _drop_new_analysis_defaults(value)


class _RolloutShape(SpecModel):
    """What every rollout has, with or without rings: versions, strategy, steps, analysis."""

    service: ServiceName
    """Service name (lowercase letters, digits, '-'; at most 63): one running rollout per service."""
    version: VersionLabel
    """Label of the new version (letters, digits, `_ . + -`); quote numbers: "1.10"."""
    stable_version: VersionLabel | None = None
    """Label of the version being replaced; `{{stable_version}}` in Prometheus queries."""
    strategy: Literal["canary", "blue_green"] = "canary"
    """`canary` (the steps shift traffic) or `blue_green` (100% at once after the steps)."""
    preset: PresetName | ExponentialPreset | None = None
    """Named steps instead of `steps` (CodeDeploy's names, or AppConfig-style exponential)."""
    steps: Annotated[list[Step], Field(max_length=MAX_STEPS)] = Field(
        default_factory=list, validate_default=True
    )
    """The steps, each one of `set_weight: N`, `pause: 30s`, `pause: {}` or `approval: {...}`."""
    pre_promotion: PrePromotionSpec | None = None
    """blue_green only: analysis against green before it gets user traffic."""
    post_promotion: Duration | None = None
    """A watch after 100%: analysis keeps running this long and a failure rolls back."""
    scale_down_delay: Duration | None = None
    """blue_green only: how long blue must stay deployed after the switch (at least post_promotion)."""
    analysis: AnalysisSpec | None = None
    """Metrics checked every interval from the first weight above 0; without it steps run on time."""
    notify: Annotated[list[NotifyTarget], Field(max_length=20)] = Field(default_factory=list)
    """Webhooks told of every phase change and every tick with a failing verdict."""

    @field_validator("steps")
    @classmethod
    def _steps_fit_strategy(cls, value: list[Step], info: ValidationInfo) -> list[Step]:
        strategy = info.data.get("strategy", "canary")
        preset = info.data.get("preset")
        if any(s.watch is not None for s in value):
            raise ValueError("`watch` is not a step; write `post_promotion: 10m` at the top level")
        if strategy == "blue_green":
            if any(s.set_weight is not None for s in value):
                raise ValueError(
                    "blue_green switches 100% at once after its steps; its steps may only be "
                    "`pause` and `approval` (drop the set_weight steps, or use strategy: canary)"
                )
            return value
        if preset is not None and value:
            raise ValueError(
                "give either `preset:` or `steps:`, not both; `sluice plan` shows a preset's steps"
            )
        if preset is None and "preset" in info.data and not value:
            raise ValueError(
                "no steps; list at least one, or name a `preset:` (e.g. Canary10Percent5Minutes)"
            )
        full = next((i for i, s in enumerate(value) if s.set_weight == 100), None)
        if full is not None and full < len(value) - 1:
            raise located(
                f"[{full + 1}]",
                f"comes after steps[{full}] sent all traffic to the new version, where the rollout is "
                "promoted and ends; to keep analysing at 100% write `post_promotion: 10m` at the top "
                "level, and to go back, abort",
            )
        if value and not any(s.set_weight for s in value):
            raise ValueError(
                "no step sends traffic to the new version (`set_weight` above 0), so all of it would "
                "move at once after these steps; add `- set_weight: 10` steps, or say so with "
                "`strategy: blue_green` (pauses and approvals, then 100% at once)"
            )
        return value

    @model_validator(mode="after")
    def _strategy_fields(self) -> _RolloutShape:
        if self.strategy != "blue_green":
            for name in ("pre_promotion", "scale_down_delay"):
                if getattr(self, name) is not None:
                    raise located(name, f"`{name}` applies to strategy: blue_green only")
        elif self.preset is not None:
            raise located(
                "preset", "presets are canary steps; blue_green switches 100% at once (drop `preset:`)"
            )
        if isinstance(self.preset, ExponentialPreset) and self.preset.bake_time and self.post_promotion:
            raise located(
                "post_promotion",
                "the exponential preset's bake_time is its post_promotion watch; give only one",
            )
        if self.post_promotion is not None and self.post_promotion <= timedelta(0):
            raise located(
                "post_promotion", "post_promotion must be longer than 0s; leave it out for no watch"
            )
        if self.scale_down_delay is not None and self.scale_down_delay < (self.watch_time or timedelta(0)):
            raise located(
                "scale_down_delay",
                "scale_down_delay is shorter than post_promotion: blue must stay deployed for the "
                "whole watch, or there is nothing to switch back to",
            )
        metrics = self.analysis.metrics if self.analysis is not None else []
        if self.pre_promotion is not None and self.pre_promotion.analysis is not None:
            metrics = [*metrics, *self.pre_promotion.analysis.metrics]
        for metric in metrics:
            if isinstance(metric, PrometheusMetric) and metric.compare and self.stable_version is None:
                raise located(
                    "stable_version",
                    f"metric {metric.name!r} compares with stable through Prometheus, which "
                    "needs `stable_version:` to fill {{version}} for the stable series",
                )
        return self

    @property
    def workflow_id(self) -> str:
        """At most one running rollout per service: the service names the workflow."""
        return workflow_id_for(self.service)

    @property
    def watch_time(self) -> timedelta | None:
        """The post-promotion watch: `post_promotion`, or an exponential preset's `bake_time`."""
        if self.post_promotion is not None:
            return self.post_promotion
        if isinstance(self.preset, ExponentialPreset) and self.preset.bake_time > timedelta(0):
            return self.preset.bake_time
        return None

    def written_steps(self) -> list[Step]:
        """The steps before the engine's additions: the spec's own, or a preset's expansion."""
        if isinstance(self.preset, ExponentialPreset):
            weights = self.preset.weights()
            gap = self.preset.deploy_time / max(1, len(weights) - 1)
            gap = timedelta(seconds=max(1, int(gap.total_seconds())))
            steps: list[Step] = []
            for w in weights:
                steps.append(Step(set_weight=w))
                if w < 100:
                    steps.append(Step(pause=PauseSpec(duration=gap)))
            return steps
        if self.preset is not None:
            return named_preset_steps(self.preset)
        if self.strategy == "blue_green" and self.pre_promotion is not None:
            return [Step(pause=PauseSpec(duration=self.pre_promotion.duration)), *self.steps]
        return list(self.steps)

    def effective_steps(self) -> list[Step]:
        """The steps as run: a final `set_weight: 100` is added when the spec does not end there,
        then the post-promotion watch if there is one."""
        steps = self.written_steps()
        weights = [s.set_weight for s in steps if s.set_weight is not None]
        if not weights or weights[-1] != 100:
            steps = [*steps, Step(set_weight=100)]
        if self.watch_time is not None:
            steps = [*steps, Step(watch=self.watch_time)]
        return steps

    def digest(self) -> str:
        """A short stable hash of the spec, so a CI re-run can recognise its own rollout."""
        data = self.model_dump(mode="json")
        for key in _NEW_TOP_LEVEL:
            if data.get(key) in (None, "canary"):
                data.pop(key, None)
        if not data.get("notify"):  # likewise: without webhooks, the digest is as it always was
            data.pop("notify", None)
        if not data.get("steps"):
            data["steps"] = data.get("steps", [])
        for step in data.get("steps", []):
            for key in _NEW_STEP_KEYS:
                if step.get(key) is None:
                    step.pop(key, None)
        for metric in (data.get("analysis") or {}).get("metrics", []):
            for key, default in _NEW_METRIC_DEFAULTS.get(metric.get("provider"), {}).items():
                if metric.get(key) == default:
                    metric.pop(key, None)
        _drop_new_analysis_defaults(data)
        _drop_unsigned_gate_default(data)
        canonical = json.dumps(data, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _drop_unsigned_gate_default(node: object) -> None:
    """Every approval gate's `require_verified: false` (added later) leaves the digest as it was,
    wherever the gate is (a step, a ring, a blue/green preview step)."""
    if isinstance(node, dict):
        gate = node.get("approval")
        if isinstance(gate, dict) and gate.get("require_verified") is False:
            gate.pop("require_verified")
        for value in node.values():
            _drop_unsigned_gate_default(value)
    elif isinstance(node, list):
        for value in node:
            _drop_unsigned_gate_default(value)


class RolloutSpec(_RolloutShape):
    """A whole rollout: which service, which versions, where traffic is split, steps, analysis."""

    router: RouterSpec
    """Where traffic is split: `type` haproxy, alb, lambda_alias, apigateway or route53."""

    @model_validator(mode="after")
    def _router_counters(self) -> RolloutSpec:
        # Only HAProxy counts responses per server; the AWS routers' numbers live in CloudWatch,
        # the proxies' (NGINX, Traefik, Caddy) in Prometheus or behind an http check.
        if self.analysis is not None and self.router.type != "haproxy":
            instead = (
                "provider http or prometheus"
                if self.router.type in ("nginx", "traefik", "caddy")
                else "provider cloudwatch"
            )
            for i, metric in enumerate(self.analysis.metrics):
                if metric.provider == "haproxy":
                    raise located(
                        f"analysis.metrics[{i}].provider",
                        f"metric {metric.name!r} uses provider haproxy, which reads HAProxy's counters, "
                        f"but the router is {self.router.type}; use {instead} instead",
                    )
        return self

    def traffic_targets(self) -> tuple[str, ...]:
        """The traffic this rollout moves (its router's keys): one running rollout per target."""
        return traffic_targets_of(self.router)


class RingSpec(SpecModel):
    """One ring (a cluster, region or account): its own router, optionally its own analysis."""

    name: MetricName
    """Ring name (lowercase letters, digits, `_ . -`), unique among the rings."""
    router: RouterSpec
    """The ring's own router (any type)."""
    analysis: AnalysisSpec | None = None
    """Defaults to the spec's top-level `analysis`."""
    soak: PositiveDuration | None = None
    """After this ring reaches 100%: keep analysing it this long before the next ring starts
    (the ring's post-promotion watch; a failure rolls it back and the saga runs)."""
    approval: ApprovalSpec | None = None
    """A gate after this ring (and its soak) before the next ring starts."""


class RingRolloutSpec(_RolloutShape):
    """The same release rolled out ring by ring; a failing ring rolls back itself, then earlier rings."""

    rings: Annotated[list[RingSpec], Field(min_length=1, max_length=50)]
    """The rings, in order; each runs the steps with its own router."""
    earlier_rings_on_failure: Literal["rollback", "stay"] = "rollback"
    """When a ring fails: roll the earlier rings back too (newest first), or leave them."""

    @model_validator(mode="after")
    def _rings_valid(self) -> RingRolloutSpec:
        names = [r.name for r in self.rings]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise located("rings", f"ring names must be unique; {', '.join(dupes)} appears more than once")
        last = self.rings[-1]
        if last.approval is not None:
            raise located(
                f"rings[{len(self.rings) - 1}].approval",
                f"ring {last.name!r} is the last ring; an approval gates the *next* ring, so it has "
                "nothing to gate (use an `approval` step instead)",
            )
        for i in range(len(self.rings)):
            self.ring_spec(i)  # each ring must be a valid rollout on its own
        return self

    def ring_spec(self, index: int) -> RolloutSpec:
        """The rollout that runs ring `index` (as a child workflow)."""
        ring = self.rings[index]
        data = self.model_dump(mode="json", exclude={"rings", "earlier_rings_on_failure"})
        data["router"] = ring.router.model_dump(mode="json")
        if ring.analysis is not None:
            data["analysis"] = ring.analysis.model_dump(mode="json")
        if ring.soak is not None:
            data["post_promotion"] = format_duration(ring.soak)
            if isinstance(self.preset, ExponentialPreset):
                data["preset"] = {**data["preset"], "bake_time": "0s"}
        try:
            return RolloutSpec.model_validate(data)
        except ValidationError as err:
            first = issue_of(err.errors()[0])
            where = f"{first.path}: " if first.path else ""
            raise located(f"rings[{index}]", f"ring {ring.name!r}: {where}{first.message}") from None

    def traffic_targets(self) -> tuple[str, ...]:
        """The traffic every ring's router moves: one running rollout per target."""
        return tuple(sorted({key for ring in self.rings for key in traffic_targets_of(ring.router)}))


AnySpec = RolloutSpec | RingRolloutSpec


def workflow_id_for(service: str) -> str:
    """`rollout-<service>`, the id of a service's rollout workflow."""
    return f"rollout-{service}"
