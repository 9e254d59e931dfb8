"""Inputs and results of the workflow, its signals and its activities (one model per call)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from sluice.contracts.durations import Duration
from sluice.contracts.spec import MetricSpec, RingRolloutSpec, RolloutSpec, RouterSpec
from sluice.contracts.status import MetricVerdict, RolloutStatus, Weights


class OperatorInput(BaseModel):
    """Payload of the pause, resume, promote, abort and approve signals and the approve update."""

    reason: str = ""
    by: str = ""
    statement: str = ""
    """A signed approval: the statement signed (`contracts.approvals.approval_statement`)."""
    signature: str = ""
    """A signed approval: the armored SSH signature of `statement` (public; no key)."""


class VerifyApprovalInput(BaseModel):
    """Check `signature` over `statement` for `principal` against the worker's allowed signers."""

    statement: str
    signature: str
    principal: str


class VerifyApprovalResult(BaseModel):
    """Whether the signature verified, and why not (ssh-keygen's own words, capped)."""

    verified: bool
    reason: str = ""


class ServerCounters(BaseModel):
    """Cumulative response counters of one server, as the router reports them."""

    responses: int = 0
    errors_5xx: int = 0


class CarriedState(BaseModel):
    """A rollout's state, which it hands whole to its next run when it continues as new.

    The workflow holds one of these as it runs: the status, the operator's pause, the
    analysis baselines and evidence, and, written at the handover, where the steps stand
    (the step being waited on, and for a bake the time it has left).
    """

    status: RolloutStatus
    operator_paused: bool
    step_started: bool
    """At the handover: the step at `status.step_index` was under way (its wait resumes)."""
    bake_remaining: Duration | None = None
    """Time left of the bake (or of the approval gate's timeout) being waited on."""
    baseline: ServerCounters | None = None
    stable_baseline: ServerCounters | None = None
    evidence: list[MetricVerdict] = Field(default_factory=list)
    """Last verdict of each `compare: stable` metric, holding its sequential test's state."""
    analysis_running: bool
    """At the handover: the analysis was ticking, and the next run resumes it."""
    pass_needed_after: datetime | None = None
    """While a bake that has ended waits for a fresh pass: the pass must be recorded after this."""
    applied: Weights | None = None
    """The split Sluice last applied and read back: what a tick's read of the router must find.
    None in runs from before drift detection (and before the first change)."""


class RolloutInput(BaseModel):
    """Start a rollout of `spec`; `spec_digest` lets a CI re-run recognise it."""

    spec: RolloutSpec
    spec_digest: str
    started_by: str = ""
    carried: CarriedState | None = None
    """Set only by the workflow itself when it continues as new."""
    continue_as_new_after_events: int | None = None
    """Continue as new once history has this many events, besides when Temporal suggests it
    (which it does at a few thousand events by default). For tests; leave unset."""
    ring: str | None = None
    """Set by a ring rollout on the child that rolls out this ring (named in its webhooks)."""


class RingCarriedState(BaseModel):
    """A ring rollout's state, handed whole to its next run: the status (every ring's), where it stands."""

    status: RolloutStatus
    next_ring: int
    """The ring to start next; the gate after ring `next_ring - 1` may still be waiting."""
    gate_pending: bool
    gate_remaining: Duration | None = None
    promoted_rings: list[int] = Field(default_factory=list)


class RingRolloutInput(BaseModel):
    """Start a ring rollout: one child `Rollout` per ring, in order."""

    spec: RingRolloutSpec
    spec_digest: str
    started_by: str = ""
    carried: RingCarriedState | None = None
    continue_as_new_after_events: int | None = None
    """As for `RolloutInput`; also handed to each ring's rollout. For tests; leave unset."""


class TrafficState(BaseModel):
    """The split as read back from the router after a change (percent of requests)."""

    stable_weight: int
    canary_weight: int
    canary_counters: ServerCounters | None = None
    stable_counters: ServerCounters | None = None
    """The stable server's counters read together with `canary_counters` (routers that have them)."""
    detail: str = ""
    instances: list[Weights] = Field(default_factory=list)
    """With several router instances (HAProxy fleets): each one's split, in the spec's order.
    The split above is the one giving the new version the most; drift is any instance off."""
    attempt: int = 1
    """Which attempt of the activity produced this state (the rollback reports it)."""


class PreflightInput(BaseModel):
    """Check the router answers and both servers exist; touches nothing."""

    router: RouterSpec


class SetTrafficInput(BaseModel):
    """Declarative split: new version gets `canary_weight` percent, stable the rest."""

    router: RouterSpec
    canary_weight: int = Field(ge=0, le=100)


class ReadTrafficInput(BaseModel):
    """Read the current split; changes nothing."""

    router: RouterSpec


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
    """Verdicts of one tick, in the order of the spec's metrics, and the split read with them."""

    verdicts: list[MetricVerdict]
    weights: TrafficState | None = None
    """The router's split as read during the tick (None from workers before drift detection)."""
    weights_error: str = ""
    """Why the split could not be read, if it could not (the verdicts stand regardless)."""
