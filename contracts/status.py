"""What a rollout reports about itself: phase, weights, verdicts with numbers, operator actions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class Phase(StrEnum):
    """Where a rollout is. The last four are final."""

    PROGRESSING = "progressing"
    PAUSED = "paused"
    AWAITING_APPROVAL = "awaiting_approval"
    ROLLING_BACK = "rolling_back"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """True once the rollout has ended, whatever the outcome."""
        return self in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED)


class Verdict(StrEnum):
    """One metric's judgement at one analysis tick. Too little data is never a pass."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Comparison(BaseModel):
    """Evidence of a `compare: stable` verdict; also the sequential test's state for the next tick.

    Counts are since the new version's first weight > 0. `events` names each kind of event
    counted (`5xx`, or `slower than 0.25s` for each histogram bound); `log_lr` holds the
    test's accumulated log likelihood ratios (per event kind, per alternative) so the next
    tick can continue it (see `activities/sequential.py`).
    """

    kind: Literal["errors", "latency"]
    canary_requests: float
    stable_requests: float
    events: list[str]
    canary_events: list[float]
    stable_events: list[float]
    e_value: float
    threshold: float
    """`1/alpha`: the test rejects when `e_value` reaches it."""
    tolerance: float
    rejected: bool
    log_lr: list[list[float]] = Field(default_factory=list)
    baseline_requests: float = 0.0
    baseline_events: list[float] = Field(default_factory=list)
    """Stable's requests and events (per kind) over the intervals in which it served requests:
    what an interval without stable traffic (the post-promotion watch) is compared with."""
    against_baseline: bool = False
    """True if this tick's interval had no stable requests and was judged against the baseline."""
    spread: list[list[float]] = Field(default_factory=list)
    """Per event kind, stable's interval statistics the clustering is estimated from."""
    dispersion: list[float] = Field(default_factory=list)
    """Per event kind, the clustering factor this tick's evidence was divided by (1: none)."""


class MetricVerdict(BaseModel):
    """A metric's verdict with the numbers behind it and a one-line reason."""

    metric: str
    verdict: Verdict
    value: float | None = None
    bound: str = ""
    detail: str
    counts: dict[str, float] = Field(default_factory=dict)
    at: datetime
    comparison: Comparison | None = None
    """Set by `compare: stable` metrics: counts per version, the e-value and the test's state."""


class Weights(BaseModel):
    """Percent of requests on each version, as read back from the router."""

    stable: int
    canary: int


OperatorActionKind = Literal[
    "pause",
    "resume",
    "promote",
    "abort",
    "cancel",
    "approve",
    "approve_refused",
    "approval_timeout",
    "pause_too_late",
    "resume_too_late",
    "promote_too_late",
    "abort_too_late",
    "promote_refused",
    "resume_refused",
]
"""`<signal>_too_late`: the signal arrived once the rollout was ending (rolling back, or final)
and had no effect; it is recorded all the same, with who sent it and why."""


TOO_LATE: dict[OperatorActionKind, OperatorActionKind] = {
    "pause": "pause_too_late",
    "resume": "resume_too_late",
    "promote": "promote_too_late",
    "abort": "abort_too_late",
}
"""The kind a steering signal is recorded as when it arrives once the rollout is ending."""


GATE_DECISIONS: frozenset[str] = frozenset(
    {"approve", "approve_refused", "approval_timeout", "promote_refused", "resume_refused"}
)
"""The actions that decide (or refuse to decide) an approval gate; with a `promote` that skipped
a waiting gate (`OperatorAction.gate` set), the audit trail webhooks and the Web UI list one by one."""


class OperatorAction(BaseModel):
    """A human (or the engine on `on_inconclusive: pause`) steering the rollout: who, why, when."""

    action: OperatorActionKind
    reason: str
    by: str
    at: datetime
    step_index: int
    verified: bool = False
    """True only if Sluice checked who `by` is. A `--by` (or a signal's `by`) is self-declared:
    anyone who can signal the workflow can type any name."""
    gate: str | None = None
    """The approval gate that waited when the action was taken (its `ApprovalWait.step`), if any."""

    @property
    def decides_a_gate(self) -> bool:
        """An approval, a refusal at a gate, a gate timeout, or a `promote` that skipped a gate."""
        return self.action in GATE_DECISIONS or (self.action == "promote" and self.gate is not None)

    def who(self) -> str:
        """`by` as it may be read: `alice (unverified)`; the engine's own actions are plain `sluice`."""
        return self.by if self.verified or self.by == "sluice" else f"{self.by} (unverified)"


class Drift(BaseModel):
    """The router was found at a split other than the one Sluice last applied.

    Kept after it ends (`resolved_at`), until the next drift replaces it; `count` says how many
    analysis ticks found a split other than `expected` since `since`.
    """

    expected: Weights
    """The split Sluice last applied (and read back)."""
    found: Weights
    """The split the latest drifting tick read from the router."""
    since: datetime
    """When a tick first found this drift."""
    at: datetime
    """When a tick last found it."""
    detail: str = ""
    """What the router said (e.g. each HAProxy instance's weights)."""
    action: Literal["reapply", "pause", "rollback"]
    """What the spec's `analysis.on_drift` did about it."""
    count: int = 1
    reapplied: int = 0
    """How many times Sluice re-applied `expected` (`on_drift: reapply`)."""
    resolved_at: datetime | None = None
    """When a read found `expected` again (re-applied, or put back by hand)."""


class AnalysisCounters(BaseModel):
    """Tick counts that decide rollback: failing ticks (total) and inconclusive ones in a row."""

    ticks: int = 0
    failed_ticks: int = 0
    consecutive_inconclusive: int = 0
    started_at: datetime | None = None


class RollbackState(BaseModel):
    """Present once a rollback began; `last_error` says why it is stuck, if it is."""

    reason: str
    started_at: datetime
    attempts: int = 0
    last_error: str | None = None
    verified_at: datetime | None = None


class ApprovalWait(BaseModel):
    """The approval gate the rollout waits at: who may approve, and what happens at the deadline."""

    step: str
    approvers: list[str] = Field(default_factory=list)
    """Empty: anyone may approve."""
    since: datetime
    deadline: datetime | None = None
    on_timeout: Literal["rollback", "continue"] = "rollback"
    require_verified: bool = False
    """Only a signed approval (`sluice approve --sign-with KEY`) passes; nothing else skips it."""


def approve_hint(service: str) -> str:
    """How an operator passes a gate, as every message about one says it."""
    return f"`sluice approve {service} --by NAME --reason R`"


def refusal_at_gate(
    approval: ApprovalWait, service: str, verb: str, by: str, promote_passes: bool = True
) -> str | None:
    """Why `verb` (`resume` or `promote`) sent by `by` may not go past the gate that waits, else None.

    Only an approval passes a gate: `resume` never does, and `promote` (which would skip it) only
    for one of its approvers (`promote_passes=False`: a ring rollout's gate between rings, where
    `promote` has no ring to act on). The workflow records the refusal; the CLI says it first.
    """
    gate = f"step {approval.step!r}"
    if verb == "resume":
        hint = approve_hint(service)
        return f"{gate} waits for an approval, which `resume` does not give; approve it: {hint}"
    if verb != "promote":
        return None
    if not promote_passes:
        return (
            f"{gate} waits for an approval between rings; `promote` acts on a ring rolling out, "
            f"and none is: {approve_hint(service)}"
        )
    if not by.strip():
        return f"{gate} waits for an approval; a `promote` past it must say who sends it (`by`)"
    if approval.require_verified:
        return (
            f"{gate} requires a signed approval, which `promote` cannot carry: "
            f"`sluice approve {service} --by NAME --reason R --sign-with KEY`"
        )
    if approval.approvers and by not in approval.approvers:
        return (
            f"{gate} waits for an approval; {by!r} may not skip it with `promote`, only its approvers "
            f"({', '.join(approval.approvers)}) may: {approve_hint(service)}"
        )
    return None


class RingStatus(BaseModel):
    """One ring of a ring rollout, as the parent workflow knows it."""

    name: str
    workflow_id: str
    phase: Phase | Literal["pending"] = "pending"
    message: str = ""
    weights: Weights | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RolloutStatus(BaseModel):
    """Everything `sluice status` and the `status` query show; also the workflow's result."""

    service: str
    version: str
    stable_version: str | None = None
    spec_digest: str
    phase: Phase
    message: str
    step_index: int
    step_count: int
    step: str
    weights: Weights | None = None
    verdicts: list[MetricVerdict] = Field(default_factory=list)
    verdicts_at: datetime | None = None
    """When the workflow recorded `verdicts` (server time): their age is now minus this. A bake
    ends only on a pass recorded after its end, or within one analysis interval before it."""
    analysis: AnalysisCounters = Field(default_factory=AnalysisCounters)
    actions: list[OperatorAction] = Field(default_factory=list)
    rollback: RollbackState | None = None
    traffic_touched: bool = False
    continued_as_new: int = 0
    """How many times this rollout continued as new to keep its history short."""
    strategy: Literal["canary", "blue_green", "rings"] = "canary"
    approval: ApprovalWait | None = None
    """Set while an approval gate waits."""
    rings: list[RingStatus] = Field(default_factory=list)
    """A ring rollout's rings in order (empty for a single rollout)."""
    keep_stable_until: datetime | None = None
    """Blue/green: blue (stable) must stay deployed until then (`scale_down_delay` after the switch)."""
    weights_at: datetime | None = None
    """When `weights` were last read from the router (after a change, or by an analysis tick)."""
    drift: Drift | None = None
    """The latest time the router was found at a split Sluice had not applied; see `Drift`."""
    started_at: datetime
    finished_at: datetime | None = None
