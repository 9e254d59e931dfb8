"""Inputs and results of the workflow, its signals and its activities (one model per call)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from contracts.spec import MetricSpec, RolloutSpec, RouterSpec
from contracts.status import MetricVerdict


class RolloutInput(BaseModel):
    """Start a rollout of `spec`; `spec_digest` lets a CI re-run recognise it."""

    spec: RolloutSpec
    spec_digest: str
    started_by: str = ""


class OperatorInput(BaseModel):
    """Payload of the pause, resume, promote and abort signals."""

    reason: str = ""
    by: str = ""


class ServerCounters(BaseModel):
    """Cumulative response counters of one server, as the router reports them."""

    responses: int = 0
    errors_5xx: int = 0


class TrafficState(BaseModel):
    """The split as read back from the router after a change (percent of requests)."""

    stable_weight: int
    canary_weight: int
    canary_counters: ServerCounters | None = None
    stable_counters: ServerCounters | None = None
    """The stable server's counters read together with `canary_counters` (routers that have them)."""
    detail: str = ""
    attempt: int = 1
    """Which attempt of the activity produced this state (the rollback reports it)."""


class PreflightInput(BaseModel):
    """Check the router answers and both servers exist; touches nothing."""

    router: RouterSpec


class SetTrafficInput(BaseModel):
    """Declarative split: new version gets `canary_weight` percent, stable the rest."""

    router: RouterSpec
    canary_weight: int = Field(ge=0, le=100)


class RollbackInput(BaseModel):
    """Put 100% on stable and verify it; `reason` is for logs only."""

    router: RouterSpec
    reason: str


class AnalyzeInput(BaseModel):
    """One analysis tick over every metric.

    `baseline` is the new version's counters at its first weight > 0, `stable_baseline` the
    stable server's at the same moment. `previous` holds the last verdict of each
    `compare: stable` metric that carried evidence: the sequential test continues from it.
    """

    service: str
    version: str
    stable_version: str | None = None
    router: RouterSpec
    metrics: list[MetricSpec]
    baseline: ServerCounters | None = None
    since: datetime | None = None
    stable_baseline: ServerCounters | None = None
    previous: list[MetricVerdict] = Field(default_factory=list)


class AnalyzeResult(BaseModel):
    """Verdicts of one tick, in the order of the spec's metrics."""

    verdicts: list[MetricVerdict]
