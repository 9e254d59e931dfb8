"""What a rollout tells the outside world as it runs: Sluice's metrics and webhook notifications.

Workflow code, deterministic: the rollout calls `RolloutObserver.changed` each time it
publishes its status. A phase change (including the start), an analysis tick with a
failing verdict, a new drift of the router's split, and each gate decision (an approval,
a refused approve/promote/resume, a gate timeout, a promote past a gate:
`OperatorAction.decides_a_gate`) each become a `notify` activity per target, run as a
background task so the rollout never waits for a webhook, and never fails because of one.
Metrics go through `workflow.metric_meter()`, which Temporal skips during replay, so they
count each event once and appear on the worker's Prometheus endpoint next to the Temporal
runtime's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import MetricCounter, MetricHistogramFloat, RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from sluice.activities.notify import headline, notify
    from sluice.contracts import errors
    from sluice.contracts.notify import EventKind, NotifyInput, NotifyTarget, RolloutEvent
    from sluice.contracts.spec import RingRolloutSpec, RolloutSpec
    from sluice.contracts.status import (
        Drift,
        MetricVerdict,
        OperatorAction,
        Phase,
        RolloutStatus,
        Verdict,
    )

NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=[errors.NOTIFY_CONFIG],
)
NOTIFY_DEADLINE = timedelta(minutes=1)
"""A notification still undelivered after this is dropped (and logged by the worker)."""

DRAIN_TIMEOUT = timedelta(seconds=5)
"""How long a finishing rollout (or one continuing as new) waits for notifications in flight.
Traffic is already settled by then; only the workflow's close waits."""


class RolloutObserver:
    """Turns status changes into metrics and notifications; holds no state the status lacks."""

    def __init__(
        self,
        spec: RolloutSpec | RingRolloutSpec,
        carried: RolloutStatus | None,
        count_metrics: bool = True,
        ring: str | None = None,
    ) -> None:
        """`count_metrics=False` for a ring rollout's parent: each ring's rollout counts itself.
        `ring` names the ring a child rollout rolls out, in its notifications."""
        self._spec = spec
        self._count_metrics = count_metrics
        self._ring = ring
        # After continue-as-new the carried phase and tick count are already told.
        self._last_phase: Phase | None = carried.phase if carried is not None else None
        self._last_tick = carried.analysis.ticks if carried is not None else 0
        self._last_drift = carried.drift.since if carried is not None and carried.drift else None
        self._last_action = len(carried.actions) if carried is not None else 0
        self._sequence = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._meters: tuple[MetricCounter, MetricCounter, MetricCounter, MetricHistogramFloat] | None = None

    def changed(self, status: RolloutStatus) -> None:
        """Count and announce what changed since the last call."""
        if status.phase != self._last_phase:
            previous, self._last_phase = self._last_phase, status.phase
            if self._count_metrics:
                self._count_phase(status, previous)
            self._send("phase_changed", status, previous, [])
        if status.analysis.ticks > self._last_tick:
            self._last_tick = status.analysis.ticks
            if self._count_metrics:
                self._count_verdicts(status)
            failed = [v for v in status.verdicts if v.verdict is Verdict.FAIL]
            if failed:
                self._send("verdict_failed", status, None, failed)
        if status.drift is not None and status.drift.since != self._last_drift:
            self._last_drift = status.drift.since
            self._send("traffic_drifted", status, None, [], status.drift)
        if len(status.actions) > self._last_action:
            new, self._last_action = status.actions[self._last_action :], len(status.actions)
            decisions = [a for a in new if a.decides_a_gate]
            # Runs from before gate decisions were announced sent no such notifications.
            if decisions and self._spec.notify and workflow.patched("webhooks-for-gate-decisions"):
                for action in decisions:
                    self._send("gate_decision", status, None, [], action=action)

    async def drain(self) -> None:
        """Give notifications in flight up to `DRAIN_TIMEOUT` before the run ends."""
        if self._pending:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: not self._pending,
                    timeout=DRAIN_TIMEOUT,
                    timeout_summary="deliver the last notifications",
                )

    # --- metrics ----------------------------------------------------------------------------

    def _instruments(self) -> tuple[MetricCounter, MetricCounter, MetricCounter, MetricHistogramFloat]:
        if self._meters is None:
            meter = workflow.metric_meter().with_additional_attributes({"service": self._spec.service})
            self._meters = (
                meter.create_counter("sluice_rollouts_started", "Rollouts started"),
                meter.create_counter(
                    "sluice_rollouts_finished", "Rollouts ended, by final phase (promoted, rolled_back, ...)"
                ),
                meter.create_counter("sluice_analysis_verdicts", "Metric verdicts, by metric and verdict"),
                meter.create_histogram_float(
                    "sluice_rollback_seconds",
                    "Time from the rollback decision to 100% on stable, read back",
                    "s",
                ),
            )
        return self._meters

    def _count_phase(self, status: RolloutStatus, previous: Phase | None) -> None:
        started, finished, _, rollback_seconds = self._instruments()
        if previous is None:
            started.add(1)
        if status.phase.is_final:
            finished.add(1, {"phase": status.phase.value})
            rollback = status.rollback
            if rollback is not None and rollback.verified_at is not None:
                seconds = (rollback.verified_at - rollback.started_at).total_seconds()
                rollback_seconds.record(max(seconds, 0.0))

    def _count_verdicts(self, status: RolloutStatus) -> None:
        verdicts = self._instruments()[2]
        for v in status.verdicts:
            verdicts.add(1, {"metric": v.metric, "verdict": v.verdict.value})

    # --- notifications ----------------------------------------------------------------------

    def _send(
        self,
        kind: EventKind,
        status: RolloutStatus,
        previous: Phase | None,
        failed: list[MetricVerdict],
        drift: Drift | None = None,
        action: OperatorAction | None = None,
    ) -> None:
        if not self._spec.notify:
            return
        info = workflow.info()
        self._sequence += 1
        event = RolloutEvent(
            kind=kind,
            event_id=f"{info.workflow_id}/{info.run_id}/{self._sequence}",
            service=status.service,
            version=status.version,
            stable_version=status.stable_version,
            phase=status.phase.value,
            previous_phase=previous.value if previous is not None else None,
            message=status.message,
            step=status.step,
            step_index=status.step_index,
            step_count=status.step_count,
            weights=status.weights,
            failed=failed,
            at=workflow.now(),
            ring=self._ring,
            drift=drift,
            action=action,
        )
        for target in self._spec.notify:
            task = asyncio.create_task(self._deliver(target, event))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _deliver(self, target: NotifyTarget, event: RolloutEvent) -> None:
        try:
            await workflow.execute_activity(
                notify,
                NotifyInput(target=target, event=event),
                start_to_close_timeout=target.timeout + timedelta(seconds=5),
                schedule_to_close_timeout=NOTIFY_DEADLINE,
                retry_policy=NOTIFY_RETRY,
                summary=f"notify: {headline(event)}"[:200],
            )
        except ActivityError as err:
            cause = err.cause or err
            workflow.logger.warning("notification %s not delivered: %s", event.event_id, cause)
