"""The rollout spec: what a user writes in `rollout.yaml`, validated strictly (unknown fields are errors)."""

# Modules: base (the base model, name validators, strict numbers), routers, steps (and presets),
# metrics (and analysis), rollout (the rollout and ring specs, digest), errors, loading (YAML,
# `--set` overrides), schema (the JSON Schema for editors). Every
# public name is re-exported here: import from `sluice.contracts.spec`.

from __future__ import annotations

from sluice.contracts.spec.base import (
    AwsRegion,
    HttpUrl,
    MetricName,
    SafeName,
    ServiceName,
    SpecModel,
    VersionLabel,
)
from sluice.contracts.spec.errors import SpecError, SpecIssue, issues_from
from sluice.contracts.spec.loading import load_spec, parse_any_spec, parse_spec
from sluice.contracts.spec.metrics import (
    PROVIDER_TYPES,
    AnalysisSpec,
    CloudWatchAlarmGate,
    CloudWatchMetric,
    CloudWatchQuery,
    HAProxyMetric,
    HttpMetric,
    MetricModel,
    MetricSpec,
    PrometheusMetric,
)
from sluice.contracts.spec.rollout import (
    AnySpec,
    PrePromotionSpec,
    RingRolloutSpec,
    RingSpec,
    RolloutSpec,
    workflow_id_for,
)
from sluice.contracts.spec.routers import (
    ROUTER_TYPES,
    ALBRouter,
    ApiGatewayRouter,
    HAProxyRouter,
    LambdaAliasRouter,
    ListenerArn,
    Route53Router,
    RouterModel,
    RouterSpec,
    RuleArn,
    TargetGroupArn,
)
from sluice.contracts.spec.schema import SCHEMA_ID, rollout_json_schema
from sluice.contracts.spec.steps import (
    PRESET_NAMES,
    ApprovalSpec,
    ExponentialPreset,
    PauseSpec,
    PresetName,
    Step,
)

__all__ = [
    "PRESET_NAMES",
    "PROVIDER_TYPES",
    "ROUTER_TYPES",
    "SCHEMA_ID",
    "ALBRouter",
    "AnalysisSpec",
    "AnySpec",
    "ApiGatewayRouter",
    "ApprovalSpec",
    "AwsRegion",
    "CloudWatchAlarmGate",
    "CloudWatchMetric",
    "CloudWatchQuery",
    "ExponentialPreset",
    "HAProxyMetric",
    "HAProxyRouter",
    "HttpMetric",
    "HttpUrl",
    "LambdaAliasRouter",
    "ListenerArn",
    "MetricModel",
    "MetricName",
    "MetricSpec",
    "PauseSpec",
    "PrePromotionSpec",
    "PresetName",
    "PrometheusMetric",
    "RingRolloutSpec",
    "RingSpec",
    "RolloutSpec",
    "Route53Router",
    "RouterModel",
    "RouterSpec",
    "RuleArn",
    "SafeName",
    "ServiceName",
    "SpecError",
    "SpecIssue",
    "SpecModel",
    "Step",
    "TargetGroupArn",
    "VersionLabel",
    "issues_from",
    "load_spec",
    "parse_any_spec",
    "parse_spec",
    "rollout_json_schema",
    "workflow_id_for",
]
