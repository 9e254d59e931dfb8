"""Delivery insights from finished rollouts: change failure rate, time to restore, why rollbacks happen.

Pure functions over `RolloutStatus`es (each finished rollout's result) and, where Temporal's
history was read, the timeline it holds (`RunTimeline`: phases, weights, analysis ticks).
Nothing here does I/O; `sluice.runtime.rollout_history` gathers the inputs and
`sluice.cli.report` renders the outputs. Every figure is defined once, in `Figures`.

Definitions shared by every figure:
- A *rollout* is one workflow chain `rollout-<service>` started by `sluice start` (a ring
  rollout counts once; runs joined by continue-as-new count once). It is in the window when
  its first run started at or after `since`.
- *Finished*: its outcome is `promoted`, `rolled_back`, `aborted` or `failed` (a failed
  rollback). `running` rollouts and `unknown` ones (terminated or timed out through Temporal,
  so Sluice never recorded an outcome) are counted but enter no rate or duration.
- Medians are the middle value (mean of the two middle ones for an even count); `p90` is the
  nearest-rank 90th percentile: the smallest value at least 90% of the values are <= to
  (for 1-9 values that is the largest one).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from sluice.contracts.status import MetricVerdict, OperatorAction, Phase, RolloutStatus, Verdict

Outcome = Literal["promoted", "rolled_back", "aborted", "failed", "running", "unknown"]
FINISHED: tuple[Outcome, ...] = ("promoted", "rolled_back", "aborted", "failed")
CHANGE_FAILURES: tuple[Outcome, ...] = ("rolled_back", "aborted", "failed")

Cause = Literal["analysis", "operator", "cancel", "approval_timeout", "step_failure", "preflight", "other"]
"""Who or what ended a rollout that was not promoted:
- `analysis`: the analysis failed (`failure_limit` exceeded) or stayed inconclusive too long;
- `operator`: `sluice abort` (or the `abort` signal), the action names who;
- `cancel`: a Temporal cancel (`temporal workflow cancel`, the Web UI's cancel);
- `approval_timeout`: an approval gate's deadline passed with `on_timeout: rollback`;
- `step_failure`: a traffic change failed for good (the router refused or kept failing);
- `preflight`: the router or a server was missing before any traffic moved;
- `other`: anything else (e.g. traffic found moved by someone else: drift)."""


# --- inputs ---------------------------------------------------------------------------------


class PhaseSpan(BaseModel):
    """The rollout was in `phase` from `start` to `end` (from its `SluicePhase` upserts)."""

    phase: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return max((self.end - self.start).total_seconds(), 0.0)


class WeightPoint(BaseModel):
    """The split as read back from the router after a traffic activity completed."""

    at: datetime
    stable: int
    canary: int
    source: Literal["preflight", "set_traffic", "rollback"]


class Tick(BaseModel):
    """One analysis tick: every metric's verdict, as the `analyze` activity returned it."""

    number: int
    at: datetime
    verdicts: list[MetricVerdict]

    @property
    def failed(self) -> bool:
        return any(v.verdict is Verdict.FAIL for v in self.verdicts)


class RunTimeline(BaseModel):
    """What a rollout's Temporal history says happened, in time order (all runs of the chain)."""

    phases: list[PhaseSpan] = Field(default_factory=list)
    weights: list[WeightPoint] = Field(default_factory=list)
    ticks: list[Tick] = Field(default_factory=list)


class RolloutRun(BaseModel):
    """One rollout as the report sees it: Temporal's record, Sluice's final status, the timeline."""

    workflow_id: str
    run_id: str
    temporal_status: str
    """Temporal's execution status (completed, canceled, terminated, running, ...)."""
    status: RolloutStatus
    timeline: RunTimeline | None = None
    """None when the history was not read: figures then come from the status alone."""


# --- per-rollout facts --------------------------------------------------------------------------


class RolloutFacts(BaseModel):
    """The figures of one rollout that the aggregates are built from (see `facts_of`)."""

    workflow_id: str
    run_id: str
    service: str
    version: str
    spec_digest: str
    outcome: Outcome
    cause: Cause | None
    """Set for rolled_back, aborted and failed rollouts."""
    by: str | None
    """Who ended it when an operator did (`abort` or `cancel` action's `by`)."""
    started_at: datetime
    finished_at: datetime | None
    reason: str | None
    """The rollback's reason (or the final message when traffic was never shifted)."""
    rollback_metrics: list[str] = Field(default_factory=list)
    """Metrics whose verdict ended the rollout: failing ones, or inconclusive ones when the
    analysis stayed inconclusive too long."""
    first_failure_at: datetime | None = None
    """The earliest failing analysis verdict of the rollout, if any."""
    restore_seconds: float | None = None
    """Time to restore (see `Figures.time_to_restore`)."""
    promotion_seconds: float | None = None
    paused_seconds: float = 0.0
    approval_seconds: float = 0.0


def outcome_of(status: RolloutStatus, temporal_status: str) -> Outcome:
    """The final phase, `running`, or `unknown` when Temporal closed it without a Sluice outcome."""
    if status.phase.is_final:
        return status.phase.value  # type: ignore[return-value]  # the four final phases are Outcomes
    if temporal_status == "running":
        return "running"
    return "unknown"


def cause_of(status: RolloutStatus) -> tuple[Cause | None, str | None]:
    """Who or what ended a rollout that was not promoted, and who when a person did.

    Read from the rollback's reason (the final message when traffic was never shifted) and
    the last `abort` or `cancel` action, which names who.
    """
    if status.phase not in (Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED):
        return None, None
    reason = (status.rollback.reason if status.rollback else status.message).lower()
    cancels = [a for a in status.actions if a.action == "cancel"]
    aborts = [a for a in status.actions if a.action == "abort"]
    if reason.startswith("the workflow was cancelled") or (status.phase is Phase.ABORTED and cancels):
        return "cancel", cancels[-1].by if cancels else None
    if reason.startswith("aborted by") or status.phase is Phase.ABORTED:
        return "operator", aborts[-1].by if aborts else None
    if reason.startswith("preflight failed"):
        return "preflight", None
    if reason.startswith("analysis failed") or "inconclusive analysis ticks" in reason:
        return "analysis", None
    if reason.startswith("approval gate timed out"):
        return "approval_timeout", None
    if reason.startswith("a step failed for good"):
        return "step_failure", None
    return "other", None


def facts_of(run: RolloutRun) -> RolloutFacts:
    """One rollout's figures, from its status and, when read, its timeline.

    - `first_failure_at`: the first tick with a failing verdict in the timeline; without a
      timeline, the earliest failing verdict the final status still holds (its last tick).
    - `restore_seconds`: from `first_failure_at` (or, with no failing verdict, e.g. an abort,
      from the rollback's start: the decision) to the rollback's `verified_at` (100% stable,
      read back). None when no rollback was verified.
    - `promotion_seconds`: promoted rollouts, `finished_at - started_at`.
    - `paused_seconds` / `approval_seconds`: time in phase `paused` / `awaiting_approval` per
      the timeline; without one, pauses are paired from the actions (a `pause` until the next
      resume, promote, approve, abort or cancel, else the end) and approval waits are unknown (0).
    """
    status = run.status
    outcome = outcome_of(status, run.temporal_status)
    cause, by = cause_of(status) if outcome in CHANGE_FAILURES else (None, None)
    first_failure = _first_failure(status, run.timeline)
    restore = None
    rollback = status.rollback
    if rollback is not None and rollback.verified_at is not None:
        since = first_failure or rollback.started_at
        restore = max((rollback.verified_at - since).total_seconds(), 0.0)
    promotion = None
    if outcome == "promoted" and status.finished_at is not None:
        promotion = max((status.finished_at - status.started_at).total_seconds(), 0.0)
    if run.timeline is not None and run.timeline.phases:
        paused = sum(s.seconds for s in run.timeline.phases if s.phase == Phase.PAUSED.value)
        approval = sum(s.seconds for s in run.timeline.phases if s.phase == Phase.AWAITING_APPROVAL.value)
    else:
        paused, approval = _paused_from_actions(status), 0.0
    reason = None
    if outcome in CHANGE_FAILURES:
        reason = status.rollback.reason if status.rollback is not None else status.message
    return RolloutFacts(
        workflow_id=run.workflow_id,
        run_id=run.run_id,
        service=status.service,
        version=status.version,
        spec_digest=status.spec_digest,
        outcome=outcome,
        cause=cause,
        by=by,
        started_at=status.started_at,
        finished_at=status.finished_at,
        reason=reason,
        rollback_metrics=_deciding_metrics(status) if cause == "analysis" else [],
        first_failure_at=first_failure,
        restore_seconds=restore,
        promotion_seconds=promotion,
        paused_seconds=paused,
        approval_seconds=approval,
    )


def _first_failure(status: RolloutStatus, timeline: RunTimeline | None) -> datetime | None:
    if timeline is not None and timeline.ticks:
        for tick in timeline.ticks:
            failing = [v.at for v in tick.verdicts if v.verdict is Verdict.FAIL]
            if failing:
                return min(failing)
        return None
    failing = [v.at for v in status.verdicts if v.verdict is Verdict.FAIL]
    return min(failing) if failing else None


def _deciding_metrics(status: RolloutStatus) -> list[str]:
    """The metrics of the last tick that decided the rollback (failing, else inconclusive)."""
    for kind in (Verdict.FAIL, Verdict.INCONCLUSIVE):
        names = [v.metric for v in status.verdicts if v.verdict is kind]
        if names:
            return names
    return []


def _paused_from_actions(status: RolloutStatus) -> float:
    total, since = 0.0, None
    for action in status.actions:
        if action.action == "pause" and since is None:
            since = action.at
        elif since is not None and action.action in ("resume", "promote", "approve", "abort", "cancel"):
            total += max((action.at - since).total_seconds(), 0.0)
            since = None
    if since is not None and status.finished_at is not None:
        total += max((status.finished_at - since).total_seconds(), 0.0)
    return total


# --- statistics -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    """The middle value (mean of the two middle ones); None for no values."""
    return statistics.median(values) if values else None


def p90(values: Sequence[float]) -> float | None:
    """Nearest-rank 90th percentile: the `ceil(0.9 n)`-th smallest value; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]


class Durations(BaseModel):
    """A duration figure over some rollouts, in seconds."""

    count: int
    median_s: float | None
    p90_s: float | None
    max_s: float | None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Durations:
        known = [v for v in values if v is not None]
        return cls(count=len(known), median_s=median(known), p90_s=p90(known), max_s=max(known, default=None))


# --- aggregates -------------------------------------------------------------------------------


class Figures(BaseModel):
    """The delivery figures of a set of rollouts (one service's, or all of them) over the window."""

    rollouts: int
    """Rollouts started in the window, whatever their outcome."""
    running: int
    unknown: int
    """Terminated or timed out through Temporal: no outcome recorded (excluded from the rates)."""
    finished: int
    promoted: int
    rolled_back: int
    aborted: int
    failed: int
    """Rollbacks that could not complete (traffic may still reach the new version)."""
    deployments_per_week: float
    """Promoted rollouts per 7 days of the window: `promoted / (window_days / 7)`."""
    rollouts_per_week: float
    """Rollouts started per 7 days of the window."""
    change_failure_rate: float | None
    """`(rolled_back + aborted + failed) / finished`; None with nothing finished."""
    time_to_restore: Durations
    """Per rollout whose rollback was verified: first failing verdict (or, with none, the
    rollback decision) to 100% on stable, read back."""
    time_to_promotion: Durations
    """Per promoted rollout: start to promotion (100% new, read back)."""
    paused: Durations
    """Per rollout that paused at all: seconds in phase `paused` (operator pause, `pause: {}`
    step, or `on_inconclusive: pause`)."""
    awaiting_approval: Durations
    """Per rollout that waited at an approval gate: seconds in phase `awaiting_approval`."""
    paused_total_s: float
    awaiting_approval_total_s: float
    rollback_causes: dict[str, int]
    """Change failures by `Cause`: analysis, operator, cancel, approval_timeout, step_failure,
    preflight, other."""
    rollback_by: dict[str, int]
    """Operator-caused change failures (operator, cancel) by who."""
    rollback_metrics: dict[str, int]
    """Analysis-caused rollbacks by deciding metric (one rollback can name several)."""
    rollback_reasons: dict[str, int]
    """Change failures by reason (the rollback's reason, numbers removed so alike ones group)."""


class WeekCount(BaseModel):
    """Rollouts started in one ISO week (Monday, UTC) and how they ended."""

    week: str
    """The Monday of the week, `YYYY-MM-DD`."""
    started: int
    promoted: int
    change_failures: int


class SuspiciousRollback(BaseModel):
    """A version the engine rolled back, later promoted unchanged (same version, same spec
    digest): the rollback may have been false (noise, a flaky metric, a neighbour's incident)."""

    service: str
    version: str
    spec_digest: str
    rolled_back_run: str
    rolled_back_at: datetime | None
    cause: Cause | None
    metrics: list[str]
    reason: str | None
    promoted_run: str
    promoted_at: datetime | None


class ServiceFigures(Figures):
    service: str


class InsightsReport(BaseModel):
    """`sluice report`: figures overall and per service, weekly counts, suspicious rollbacks."""

    generated_at: datetime
    since: datetime
    until: datetime
    window_days: float
    service: str | None
    """The `--service` filter, if any."""
    overall: Figures
    services: list[ServiceFigures]
    weeks: list[WeekCount]
    suspicious: list[SuspiciousRollback]
    rollouts: list[RolloutFacts]
    """Every rollout in the window, oldest first."""


def summarize(
    runs: Sequence[RolloutRun], since: datetime, until: datetime, service: str | None = None
) -> InsightsReport:
    """The report over `runs` started in `[since, until]` (and of `service`, if given)."""
    facts = sorted(
        (
            facts_of(r)
            for r in runs
            if since <= r.status.started_at <= until and (service is None or r.status.service == service)
        ),
        key=lambda f: f.started_at,
    )
    days = max((until - since).total_seconds() / 86400, 1e-9)
    services = sorted({f.service for f in facts})
    return InsightsReport(
        generated_at=until,
        since=since,
        until=until,
        window_days=round(days, 6),
        service=service,
        overall=figures(facts, days),
        services=[
            ServiceFigures(service=s, **figures([f for f in facts if f.service == s], days).model_dump())
            for s in services
        ],
        weeks=weekly(facts, since, until),
        suspicious=suspicious(facts),
        rollouts=facts,
    )


def figures(facts: Sequence[RolloutFacts], window_days: float) -> Figures:
    """Aggregate rollouts' facts; see each `Figures` field for its definition."""
    outcomes = Counter(f.outcome for f in facts)
    finished = sum(outcomes[o] for o in FINISHED)
    failures = [f for f in facts if f.outcome in CHANGE_FAILURES]
    weeks = window_days / 7
    paused = [f.paused_seconds for f in facts if f.outcome != "running" and f.paused_seconds > 0]
    approval = [f.approval_seconds for f in facts if f.outcome != "running" and f.approval_seconds > 0]
    return Figures(
        rollouts=len(facts),
        running=outcomes["running"],
        unknown=outcomes["unknown"],
        finished=finished,
        promoted=outcomes["promoted"],
        rolled_back=outcomes["rolled_back"],
        aborted=outcomes["aborted"],
        failed=outcomes["failed"],
        deployments_per_week=outcomes["promoted"] / weeks,
        rollouts_per_week=len(facts) / weeks,
        change_failure_rate=len(failures) / finished if finished else None,
        time_to_restore=Durations.of(f.restore_seconds for f in failures),
        time_to_promotion=Durations.of(f.promotion_seconds for f in facts if f.outcome == "promoted"),
        paused=Durations.of(paused),
        awaiting_approval=Durations.of(approval),
        paused_total_s=sum(paused),
        awaiting_approval_total_s=sum(approval),
        rollback_causes=_counted(f.cause for f in failures if f.cause is not None),
        rollback_by=_counted(f.by for f in failures if f.cause in ("operator", "cancel") and f.by),
        rollback_metrics=_counted(m for f in failures for m in f.rollback_metrics),
        rollback_reasons=_counted(reason_key(f.reason) for f in failures if f.reason),
    )


def _counted(items: Iterable[str]) -> dict[str, int]:
    """Counts, most frequent first (ties by name)."""
    return dict(sorted(Counter(items).items(), key=lambda kv: (-kv[1], kv[0])))


_NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?")
"""A number on its own (not part of a name like `canary-5xx` or `p99`)."""


def reason_key(reason: str, width: int = 120) -> str:
    """A reason with its numbers replaced by `N`, so the same cause groups across rollouts."""
    text = _NUMBER.sub("N", reason.split("; 100% of traffic")[0])
    return text if len(text) <= width else text[: width - 1] + "…"


def weekly(facts: Sequence[RolloutFacts], since: datetime, until: datetime) -> list[WeekCount]:
    """One row per ISO week (UTC) from the window's first to its last, empty weeks included."""

    def monday(at: datetime) -> datetime:
        day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=day.weekday())

    rows: dict[datetime, WeekCount] = {}
    week = monday(since)
    while week <= until:
        rows[week] = WeekCount(week=week.date().isoformat(), started=0, promoted=0, change_failures=0)
        week += timedelta(days=7)
    for f in facts:
        row = rows.get(monday(f.started_at))
        if row is None:
            continue
        row.started += 1
        row.promoted += f.outcome == "promoted"
        row.change_failures += f.outcome in CHANGE_FAILURES
    return list(rows.values())


def suspicious(facts: Sequence[RolloutFacts]) -> list[SuspiciousRollback]:
    """Rollouts the engine rolled back (outcome `rolled_back`) whose version was promoted by a
    later rollout of the same service with the same spec digest. Operator aborts and cancels
    are not listed: a person chose them."""
    found: list[SuspiciousRollback] = []
    ordered = sorted(facts, key=lambda f: f.started_at)
    for i, back in enumerate(ordered):
        if back.outcome != "rolled_back":
            continue
        later = next(
            (
                f
                for f in ordered[i + 1 :]
                if f.outcome == "promoted"
                and f.service == back.service
                and f.version == back.version
                and f.spec_digest == back.spec_digest
            ),
            None,
        )
        if later is not None:
            found.append(
                SuspiciousRollback(
                    service=back.service,
                    version=back.version,
                    spec_digest=back.spec_digest,
                    rolled_back_run=back.run_id,
                    rolled_back_at=back.finished_at,
                    cause=back.cause,
                    metrics=back.rollback_metrics,
                    reason=back.reason,
                    promoted_run=later.run_id,
                    promoted_at=later.finished_at,
                )
            )
    return found


# --- one rollout explained -------------------------------------------------------------------


class StoryEvent(BaseModel):
    """One line of a rollout's story: a traffic change, a tick, an operator action, a phase."""

    at: datetime
    kind: Literal["phase", "weights", "tick", "action", "decision"]
    text: str


class RolloutStory(BaseModel):
    """`sluice report --rollout SERVICE`: one run told from its history, on one time axis."""

    workflow_id: str
    run_id: str
    temporal_status: str
    status: RolloutStatus
    timeline: RunTimeline
    facts: RolloutFacts
    events: list[StoryEvent]
    decision: str
    """How it ended (or where it stands) and why: the final message."""


def story_of(run: RolloutRun) -> RolloutStory:
    """Merge the timeline and the operator actions into one list of events, oldest first."""
    timeline = run.timeline or RunTimeline()
    status = run.status
    events: list[StoryEvent] = []
    for span in timeline.phases:
        events.append(StoryEvent(at=span.start, kind="phase", text=f"phase {span.phase}"))
    for w in timeline.weights:
        what = {"preflight": "router read", "set_traffic": "traffic shifted", "rollback": "rolled back"}
        events.append(
            StoryEvent(
                at=w.at, kind="weights", text=f"{what[w.source]}: stable {w.stable}% · new {w.canary}%"
            )
        )
    for tick in timeline.ticks:
        parts = [f"{v.metric} {v.verdict.value} {_value(v)}".rstrip() for v in tick.verdicts]
        events.append(
            StoryEvent(at=tick.at, kind="tick", text=f"analysis #{tick.number}: " + "; ".join(parts))
        )
    for action in status.actions:
        events.append(StoryEvent(at=action.at, kind="action", text=action_text(action)))
    events.sort(key=lambda e: (e.at, e.kind != "phase"))
    end = status.finished_at
    if end is not None:  # last, even after the final phase's upsert (recorded a moment later)
        events.append(StoryEvent(at=end, kind="decision", text=f"{status.phase.value}: {status.message}"))
    return RolloutStory(
        workflow_id=run.workflow_id,
        run_id=run.run_id,
        temporal_status=run.temporal_status,
        status=status,
        timeline=timeline,
        facts=facts_of(run),
        events=events,
        decision=f"{status.phase.value}: {status.message}",
    )


def action_text(action: OperatorAction) -> str:
    return f"{action.action} by {action.by} at step {action.step_index + 1}: {action.reason}"


def _value(v: MetricVerdict) -> str:
    if v.value is None:
        return ""
    return f"{v.value:.4g} ({v.bound})" if v.bound else f"{v.value:.4g}"


_BOUND = re.compile(r"(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)")


def bound_value(bound: str) -> tuple[str, float] | None:
    """`<= 0.02` -> ('<=', 0.02): the limit a verdict's value was held against, if it has one."""
    match = _BOUND.search(bound)
    return (match.group(1), float(match.group(2))) if match else None
