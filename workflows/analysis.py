"""The analysis of one rollout run: the loop of ticks in the background, its stop flag, its evidence.

Workflow code, deterministic. Each tick is a timer for `interval`, then one `analyze`
activity that measures every metric and reads the router's split; its verdicts are folded
into the status by `record`, the rollout acts on the decision (roll back, pause), and then
on the split it read (`TrafficWatch`: drift is noticed and handled). The baselines and the evidence
(each `compare: stable` metric's last verdict, holding its sequential test's state) live in
the rollout's `CarriedState`, so they cross continue-as-new with it; only the task and the
stop flag belong to one run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Literal, Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from sluice.activities.rollout import analyze
    from sluice.contracts.calls import AnalyzeInput, CarriedState, TrafficState
    from sluice.contracts.durations import format_duration
    from sluice.contracts.spec import AnalysisSpec, RolloutSpec
    from sluice.contracts.status import AnalysisCounters, MetricVerdict, Verdict
    from sluice.workflows.judge import Decision, judge
    from sluice.workflows.steering import failure_cause

ANALYSIS_RETRY = RetryPolicy(maximum_attempts=2, initial_interval=timedelta(milliseconds=200))
"""A tick cut off by its timeout is measured once more; then it counts as inconclusive, with why."""

ANALYZE_FLOOR = timedelta(seconds=15)
"""The least time one `analyze` attempt gets. A tick's providers cut themselves off by their own
timeouts (a Prometheus query: 5 s by default, retried up to twice; HTTP smoke requests: 2 s
each), so a healthy tick ends well within this, and a longer one is hung. Meanwhile no bake
ends on the pass before it (see `RolloutStatus.verdicts_at`)."""

HEARTBEAT_FLOOR = timedelta(seconds=5)
"""The least heartbeat timeout of an `analyze` attempt. `analyze` heartbeats every third of its
heartbeat timeout while it measures, so a tick lost with its worker (SIGKILL, a lost host) is
noticed after one heartbeat timeout, not after the start-to-close timeout, and retried on
another worker. Below 5 s a worker whose event loop stalls for a moment under load (a GC
pause, a burst of workflow tasks) would lose ticks that were still running fine."""


def analyze_heartbeat_timeout(spec: AnalysisSpec) -> timedelta:
    """Heartbeat timeout of one `analyze` attempt: one interval, at least `HEARTBEAT_FLOOR`.

    A tick lost with its worker is then retried within about one interval (issue 17: with only
    the start-to-close timeout, 15 s at least, bakes could end meanwhile on an older pass; they
    no longer do, but the analysis should not go blind for that long either).
    """
    return max(spec.interval, HEARTBEAT_FLOOR)


def analyze_timeout(spec: AnalysisSpec) -> timedelta:
    """Start-to-close of one `analyze` attempt: one interval, at least `ANALYZE_FLOOR`.

    Was `max(3 * interval, 30 s)`: a tick lost with its worker froze the analysis for 30 s,
    long enough for bakes to end on the last pass from before a fault.
    """
    return max(spec.interval, ANALYZE_FLOOR)


class TrafficWatch(Protocol):
    """What the rollout offers the analysis so that each tick's read of the router is checked.

    `traffic_epoch()` changes whenever a traffic change starts or ends; a read that began in
    another epoch than the one it ends in proves nothing about drift and is dropped.
    """

    def traffic_epoch(self) -> int:
        """A number that changes at the start and the end of every traffic change."""
        ...

    async def found(
        self, state: TrafficState, epoch: int, on_drift: Literal["reapply", "pause", "rollback"]
    ) -> None:
        """A tick read `state` from the router, having started in `epoch`; handle any drift."""
        ...


class AnalysisRun:
    """Ticks from `start` until `stop` (or `hand_over`), recording every tick's verdicts in the state.

    `halted()` ends the loop at its next turn (the rollout is stopping); `on_tick` gets the
    decision of every recorded tick and acts on it.
    """

    def __init__(
        self,
        rollout: RolloutSpec,
        state: CarriedState,
        halted: Callable[[], bool],
        on_tick: Callable[[Decision], None],
        watch: TrafficWatch | None = None,
    ) -> None:
        self._rollout = rollout
        self._state = state
        self._halted = halted
        self._on_tick = on_tick
        self._watch = watch
        self._task: asyncio.Task[None] | None = None
        self._spec: AnalysisSpec | None = None
        self._stopping = False
        """Set by `stop`: an activity that completes as the cancel arrives swallows the cancel,
        and the loop would tick on forever without it."""

    @property
    def active(self) -> bool:
        """True from `start` until `stop`, also after the loop ended by itself."""
        return self._task is not None

    def measure_from(self, traffic: TrafficState | None) -> None:
        """Count the new version from now: baselines from `traffic`'s counters (if the router has them)."""
        self._state.baseline = traffic.canary_counters if traffic is not None else None
        self._state.stable_baseline = traffic.stable_counters if traffic is not None else None
        self._state.status.analysis.started_at = workflow.now()

    @property
    def interval(self) -> timedelta | None:
        """The interval of the analysis last started, if any."""
        return self._spec.interval if self._spec is not None else None

    def start(self, spec: AnalysisSpec) -> None:
        """Tick every `spec.interval` in the background (after a `stop`, only once `restart` cleared it)."""
        self._spec = spec
        self._task = asyncio.create_task(self._loop(spec))

    async def stop(self) -> None:
        """End the loop and wait for it; a tick in flight is cancelled and not recorded."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        self._stopping = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def hand_over(self) -> None:
        """Stop for continue-as-new; the state then says whether the next run resumes the loop."""
        self._state.analysis_running = self.active
        await self.stop()

    def take_back(self) -> None:
        """Tick on after a `hand_over` whose continue-as-new did not happen (an operator's approve
        or promote landed meanwhile), with the spec it ticked with; a no-op if it was not ticking."""
        if self._state.analysis_running and self._spec is not None and self._task is None:
            self._stopping = False
            self.start(self._spec)

    async def restart(self) -> None:
        """Stop and forget every verdict and the evidence (blue/green: the preview is over)."""
        await self.stop()
        self._stopping = False
        self._state.evidence = []
        self._state.status.analysis = AnalysisCounters()
        self._state.status.verdicts = []
        self._state.status.verdicts_at = None

    def record(self, spec: AnalysisSpec, verdicts: list[MetricVerdict]) -> Decision:
        """Make `verdicts` the latest, keep their evidence, fold them into the counters and decide."""
        status = self._state.status
        status.verdicts, status.verdicts_at = verdicts, workflow.now()
        # A tick that could not measure keeps the last evidence: the test resumes from it.
        evidence = {v.metric: v for v in self._state.evidence}
        evidence.update({v.metric: v for v in verdicts if v.comparison is not None})
        self._state.evidence = list(evidence.values())
        status.analysis, decision = judge(spec, status.analysis, verdicts)
        return decision

    async def _loop(self, spec: AnalysisSpec) -> None:
        interval = format_duration(spec.interval)
        status = self._state.status
        while not self._halted() and not self._stopping:
            await workflow.sleep(spec.interval, summary=f"next analysis in {interval}")
            epoch = self._watch.traffic_epoch() if self._watch is not None else 0
            read = None
            try:
                result = await workflow.execute_activity(
                    analyze,
                    AnalyzeInput(
                        service=self._rollout.service,
                        version=self._rollout.version,
                        stable_version=self._rollout.stable_version,
                        router=self._rollout.router,
                        metrics=spec.metrics,
                        baseline=self._state.baseline,
                        since=status.analysis.started_at,
                        stable_baseline=self._state.stable_baseline,
                        previous=list(self._state.evidence),
                    ),
                    start_to_close_timeout=analyze_timeout(spec),
                    heartbeat_timeout=analyze_heartbeat_timeout(spec),
                    retry_policy=ANALYSIS_RETRY,
                    summary=f"analysis #{status.analysis.ticks + 1}",
                )
                verdicts, read = result.verdicts, result.weights
                if result.weights_error:
                    workflow.logger.warning("tick could not read the split: %s", result.weights_error)
            except ActivityError as err:
                verdicts = [_unmeasured(m.name, failure_cause(err)) for m in spec.metrics]
            if self._halted() or self._stopping or status.phase.is_final:
                return
            self._on_tick(self.record(spec, verdicts))
            if read is not None and self._watch is not None and not (self._halted() or self._stopping):
                await self._watch.found(read, epoch, spec.on_drift)


def _unmeasured(metric: str, why: str) -> MetricVerdict:
    return MetricVerdict(
        metric=metric,
        verdict=Verdict.INCONCLUSIVE,
        detail=f"could not measure: {why}",
        at=workflow.now(),
    )
