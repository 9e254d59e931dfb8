"""The rollout workflow: steps, bakes, operator signals, analysis ticks, the rollback compensation.

Deterministic orchestration only; every side effect is an activity from `activities.rollout`.
Traffic always ends at a verified split: 100% new after a promotion, 100% stable after any
rollback (failed analysis, a step that failed for good, `abort`, or a Temporal cancel).
Only `terminate` skips the compensation. Continue-as-new and bugs in this code never
trigger it (see shared/DESIGN.md, "Temporal rules that bite").
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from sluice.activities.rollout import preflight, read_traffic, set_traffic
    from sluice.contracts import errors, names
    from sluice.contracts.calls import (
        CarriedState,
        OperatorInput,
        PreflightInput,
        ReadTrafficInput,
        RolloutInput,
        SetTrafficInput,
        TrafficState,
    )
    from sluice.contracts.durations import format_duration
    from sluice.contracts.spec import AnalysisSpec, ApprovalSpec, RolloutSpec, Step
    from sluice.contracts.status import (
        TOO_LATE,
        Drift,
        OperatorActionKind,
        Phase,
        RollbackState,
        RolloutStatus,
        Weights,
    )
    from sluice.workflows.analysis import AnalysisRun
    from sluice.workflows.judge import Decision, may_end_bake, tick_verdict
    from sluice.workflows.observe import RolloutObserver
    from sluice.workflows.steering import (
        ACTIVITY_TIMEOUT,
        TRAFFIC_TIMEOUT,
        RolloutBase,
        check_approval,
        failure_cause,
    )

ROUTER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=[errors.ROUTER_CONFIG, errors.ROUTER_REJECTED],
)
"""Traffic changes: a few quick retries, then the step has failed for good (and rolls back)."""

TRAFFIC_WATCH_INTERVAL = timedelta(seconds=10)
"""How often a wait without analysis reads the router (analysis ticks read it themselves): about
every other default analysis interval, at about 10 history events per read."""


@workflow.defn(name=names.WORKFLOW_TYPE)
class RolloutWorkflow(RolloutBase):
    """One rollout of one service, identified by `rollout-<service>`."""

    _input: RolloutInput
    _state: CarriedState

    @workflow.init
    def __init__(self, inp: RolloutInput) -> None:
        self._input = inp
        self._spec: RolloutSpec = inp.spec
        self._steps: list[Step] = inp.spec.effective_steps()
        self._state = (
            inp.carried.model_copy(deep=True)
            if inp.carried is not None
            else CarriedState(
                status=RolloutStatus(
                    service=inp.spec.service,
                    version=inp.spec.version,
                    stable_version=inp.spec.stable_version,
                    spec_digest=inp.spec_digest,
                    phase=Phase.PROGRESSING,
                    message="preflight: checking the router",
                    step_index=0,
                    step_count=len(self._steps),
                    step=self._steps[0].describe(),
                    started_at=workflow.now(),
                    strategy=inp.spec.strategy,
                ),
                operator_paused=False,
                step_started=False,
                analysis_running=False,
            )
        )
        """Everything a next run needs, carried whole at continue-as-new: the status, the
        operator's pause, where the steps stand, the analysis baselines and evidence."""
        self._analysis = AnalysisRun(
            inp.spec, self._state, lambda: self._stop is not None, self._act_on, watch=self
        )
        # Traffic changes (steps, drift re-applies) one at a time; the epoch tells a tick's read
        # of the router that a change started or ended while it read (see `found`).
        self._traffic_lock = asyncio.Lock()
        self._traffic_epoch = 0
        self._watch: asyncio.Task[None] | None = None
        # Steering of this run only: none of it is pending when the rollout continues as new.
        self._promote_requested = False
        self._waiting_at_step: int | None = None
        self._released = False
        self._stop: tuple[Phase, str] | None = None
        self._gate: ApprovalSpec | None = None
        self._approved = False
        self._published: dict[str, str | int] = {}
        # Metrics and webhook notifications on phase changes and failing verdicts.
        self._observer = RolloutObserver(inp.spec, inp.carried.status if inp.carried else None, ring=inp.ring)

    # --- entry point ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: RolloutInput) -> RolloutStatus:
        """Run the rollout to a final phase and return the final status."""
        self._publish()
        if inp.carried is None:
            try:
                state = await workflow.execute_activity(
                    preflight,
                    PreflightInput(router=self._spec.router),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=ROUTER_RETRY,
                    summary="preflight: router answers, both servers exist",
                )
            except ActivityError as err:
                return await self._finish(
                    Phase.ROLLED_BACK, f"preflight failed, traffic was not touched: {failure_cause(err)}"
                )
            self._record_weights(state)
            if self._pre_promotion_analysis() is not None:
                self._analysis.measure_from(None)
                self._start_analysis()
        elif self._state.analysis_running:
            self._start_analysis()
        if workflow.patched("waits-read-the-router"):
            self._watch = asyncio.create_task(self._watch_traffic())
        return await self._run_to_the_end(Phase.ROLLED_BACK, "a step failed for good")

    async def _advance(self) -> RolloutStatus | None:
        await self._run_steps()
        if self._stop is not None:
            return None
        await self._analysis.stop()
        await self._stop_watch()
        return await self._finish(Phase.PROMOTED, self._promoted_message())

    # --- operator signals and the status query -------------------------------------------

    @workflow.signal(name=names.SIGNAL_PAUSE)
    def pause(self, inp: OperatorInput) -> None:
        """Freeze progress at the current weight; analysis keeps running and can still roll back."""
        if self._accepts("pause", inp):
            self._state.operator_paused = True
            self._publish()

    @workflow.signal(name=names.SIGNAL_RESUME)
    def resume(self, inp: OperatorInput) -> None:
        """Continue after `pause`, or past a `pause: {}` step; never past an approval gate (refused)."""
        if self._refused_at_gate("resume", inp):
            return
        if self._accepts("resume", inp):
            self._state.operator_paused = False
            if self._waiting_at_step is not None:
                self._released = True
            self._publish()

    @workflow.signal(name=names.SIGNAL_PROMOTE)
    def promote(self, inp: OperatorInput) -> None:
        """Skip the remaining steps and send 100% to the new version; at an approval gate only
        for one of its approvers (anyone else's is refused and recorded)."""
        if self._refused_at_gate("promote", inp):
            return
        if self._accepts("promote", inp):
            self._promote_requested = True
            self._state.operator_paused = False
            self._publish()

    @workflow.signal(name=names.SIGNAL_ABORT)
    def abort(self, inp: OperatorInput) -> None:
        """Roll back to 100% stable now."""
        if self._accepts("abort", inp):
            reason = inp.reason or "no reason given"
            self._stop = (Phase.ABORTED, f"aborted by {inp.by or 'an operator'}: {reason}")
            self._publish()

    @workflow.update(name=names.UPDATE_APPROVE)
    async def approve(self, inp: OperatorInput) -> RolloutStatus:
        """Pass the approval gate the rollout waits at; the validator rejects anyone not listed
        (and an unsigned approval at a gate that requires a signed one)."""
        return await self._approve(inp)

    @approve.validator
    def _check_approval(self, inp: OperatorInput) -> None:
        check_approval(self._gate, self._status, inp)

    @workflow.signal(name=names.SIGNAL_APPROVE)
    def approve_signal(self, inp: OperatorInput) -> None:
        """The approval as a signal (the Web UI's dialog): the same checks, a refusal is recorded."""
        if self._status.phase.is_final:
            return
        self._approve_by_signal(inp)

    @workflow.query(name=names.QUERY_STATUS)
    def status(self) -> RolloutStatus:
        """Phase, step, weights, last verdict of every metric, operator actions, rollback state."""
        return self._status

    def _accepts(self, action: OperatorActionKind, inp: OperatorInput) -> bool:
        """Record an operator action; once the rollout is ending, steering has no effect.

        A signal that arrives then is recorded as `<action>_too_late`, with who and why (runs
        from before that rule dropped it unrecorded).
        """
        if self._status.phase.is_final or self._stop is not None or self._status.rollback:
            if workflow.patched("late-signals-are-recorded"):
                ending = f"already {self._status.phase.value}" if self._status.phase.is_final else "ending"
                why = inp.reason or "none given"
                reason = f"arrived too late, the rollout is {ending}; their reason: {why}"
                self._record_action(TOO_LATE[action], reason, inp.by)
                self._publish()
            return False
        self._record_action(action, inp.reason, inp.by)
        return True

    # --- steps ----------------------------------------------------------------------------

    def _interrupted(self) -> bool:
        return self._stop is not None or self._promote_requested

    async def _run_steps(self) -> None:
        # Where the steps start: after continue-as-new, in the step the last run waited in.
        first, under_way = self._status.step_index, self._state.step_started
        bake_left = self._state.bake_remaining
        for index in range(first, len(self._steps)):
            step = self._steps[index]
            resuming = index == first and under_way
            if self._interrupted():
                break
            self._status.step_index = index
            self._status.step = step.describe()
            if not resuming:
                await self._hold_while_paused(index)
                if self._interrupted():
                    break
                self._status.message = f"step {index + 1}/{len(self._steps)}: {step.describe()}"
                self._publish()
            if step.set_weight is not None:
                await self._shift(step.set_weight)
            elif step.watch is not None:
                # A watch carried over with no time left was waiting for a fresh passing tick.
                left = bake_left if resuming and bake_left is not None else step.watch
                await self._bake(index, left, gate=False)
            elif step.approval is not None:
                gate = step.approval
                who = " or ".join(gate.approvers) if gate.approvers else "anyone"
                message = (
                    f"step {index + 1}: waiting for approval by {who} "
                    f"(`sluice approve {self._spec.service} --by NAME --reason R`)"
                )
                await self._await_approval(gate, gate.describe(), message, bake_left if resuming else None)
            elif step.pause is not None and step.pause.duration is not None:
                # A bake carried over with no time left was waiting for a passing tick.
                left = bake_left if resuming and bake_left is not None else step.pause.duration
                await self._bake(index, left, gate=True)
            else:
                await self._wait_for_human(index)
        if self._stop is None and self._promote_requested:
            self._status.message = "promoted by an operator: shifting 100% to the new version"
            self._status.step = "shift to 100% (promote)"
            self._publish()
        if self._stop is None and (self._status.weights is None or self._status.weights.canary != 100):
            await self._shift(100)

    async def _hold_while_paused(self, index: int, bake_left: timedelta | None = None) -> None:
        """Wait while an operator pause lasts; `bake_left` is set when called inside a bake."""
        if self._state.operator_paused and not self._interrupted():
            self._publish()
            await workflow.wait_condition(
                lambda: not self._state.operator_paused or self._interrupted() or self._history_full()
            )
            if self._state.operator_paused and not self._interrupted():
                await self._continue_as_new(index, bake_left is not None, bake_left)

    async def _shift(self, weight: int) -> None:
        before_switch = self._status.weights is None or self._status.weights.canary == 0
        pre_running = self._analysis.active and self._pre_promotion_analysis() is not None
        if weight > 0 and pre_running and before_switch:
            # Blue/green: the preview analysis is over; the post-switch analysis starts afresh.
            await self._analysis.restart()
        self._status.traffic_touched = True
        async with self._traffic_lock:  # a drift re-apply in flight finishes first
            self._traffic_epoch += 1
            try:
                state = await self._set_traffic(weight, f"shift to {weight}%")
            finally:
                self._traffic_epoch += 1
            self._record_weights(state)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The shift finished instead of being cancelled, which swallows the cancel
            # request; re-raise it so the compensation still runs.
            raise asyncio.CancelledError()
        if (
            weight == 100
            and self._spec.scale_down_delay is not None
            and self._status.keep_stable_until is None
        ):
            self._status.keep_stable_until = workflow.now() + self._spec.scale_down_delay
        if weight > 0 and not self._analysis.active and self._spec.analysis is not None:
            self._analysis.measure_from(state)
            self._start_analysis()

    async def _set_traffic(self, weight: int, summary: str) -> TrafficState:
        return await workflow.execute_activity(
            set_traffic,
            SetTrafficInput(router=self._spec.router, canary_weight=weight),
            start_to_close_timeout=TRAFFIC_TIMEOUT,
            retry_policy=ROUTER_RETRY,
            # Wait for an in-flight change to finish before compensating, so a late
            # "canary 50%" can never land after the rollback's "canary 0%".
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=summary,
        )

    async def _bake(self, index: int, duration: timedelta, gate: bool) -> None:
        """A durable timer that stops counting while paused and keeps its remaining time.

        With `gate` (a `pause` step), a bake under analysis ends only on a fresh passing tick
        (see `_await_pass`); without (the watch after 100%), only on a fresh pass too, since
        promotion follows it, unless its history is from before that rule.
        """
        remaining = duration
        while remaining > timedelta(0) and not self._interrupted():
            if self._state.operator_paused:
                await self._hold_while_paused(index, remaining)
                continue
            started = workflow.now()
            try:
                await workflow.wait_condition(
                    lambda: self._state.operator_paused or self._interrupted() or self._history_full(),
                    timeout=remaining,
                    timeout_summary=f"bake {format_duration(remaining)}",
                )
            except TimeoutError:
                break
            remaining -= workflow.now() - started
            if self._state.operator_paused:
                self._status.message = f"paused with {format_duration(remaining)} of the bake left"
            elif self._history_full() and not self._interrupted():
                await self._continue_as_new(index, True, remaining)
        if not self._interrupted() and (gate or self._watch_needs_a_fresh_pass()):
            await self._await_pass(index)

    def _watch_needs_a_fresh_pass(self) -> bool:
        if not self._analysis.active:
            return False
        assert self._analysis.interval is not None
        if self._passed_since(workflow.now() - self._analysis.interval):
            return False
        return workflow.patched("watch-ends-on-a-fresh-pass")  # histories before it promoted on any

    def _last_tick_passed(self) -> bool:
        # The bake-end rule `sluice backtest` runs too (workflows.judge.may_end_bake).
        return bool(self._status.verdicts) and may_end_bake(self._status.verdicts)

    def _passed_since(self, moment: datetime) -> bool:
        """The latest tick passed and was recorded at or after `moment`."""
        at = self._status.verdicts_at
        return self._last_tick_passed() and at is not None and at >= moment

    async def _await_pass(self, index: int) -> None:
        """The end of a bake under analysis: go on only on a fresh passing tick.

        The latest tick must have passed and have been recorded after the bake ended, or
        within one analysis interval before (`verdicts_at`): a tick lost with its worker, a
        hung provider or a slow query holds the bake, never ends it on the pass from before.
        That moment is carried across continue-as-new. A tick passes only with enough data
        and no failure, so a canary too quiet to judge never moves on silently: its
        inconclusive ticks run into `inconclusive_limit`, and `on_inconclusive` rolls back or
        pauses. An operator's `resume` after such a pause (or any pause at this point) lets
        the rollout go on without the pass; `promote` and `abort` act as always.
        """
        if not self._analysis.active:
            return
        if self._state.pass_needed_after is None:
            assert self._analysis.interval is not None
            self._state.pass_needed_after = workflow.now() - self._analysis.interval
        await self._await_pass_since(index, self._state.pass_needed_after)
        self._state.pass_needed_after = None

    async def _await_pass_since(self, index: int, moment: datetime) -> None:
        if self._passed_since(moment):
            return
        if self._last_tick_passed():
            if not workflow.patched("bake-ends-on-a-fresh-pass"):
                return  # histories from before this rule ended the bake on any pass
        elif not workflow.patched("bake-ends-on-a-pass"):
            return  # histories from before this rule went straight on
        last = tick_verdict(self._status.verdicts).value if self._status.verdicts else "none yet"
        if self._last_tick_passed():
            at = self._status.verdicts_at
            last += f" recorded {f'at {at:%H:%M:%S} UTC' if at else 'in an earlier run'}, too old"
        self._status.message = (
            f"step {index + 1}: bake over, waiting for a passing analysis tick (last tick: {last})"
        )
        self._publish()
        while not self._interrupted():
            await workflow.wait_condition(
                lambda: (
                    self._passed_since(moment)
                    or self._state.operator_paused
                    or self._interrupted()
                    or self._history_full()
                )
            )
            if self._passed_since(moment) or self._interrupted():
                return
            if self._state.operator_paused:
                await self._hold_while_paused(index, timedelta(0))
                return  # resumed by a human: the gate is theirs to pass
            await self._continue_as_new(index, True, timedelta(0))

    async def _wait_for_human(self, index: int) -> None:
        self._waiting_at_step = index
        self._released = False
        self._status.message = f"step {index + 1}: waiting for `sluice resume` or `sluice promote`"
        self._publish()
        try:
            await workflow.wait_condition(
                lambda: self._released or self._interrupted() or self._history_full()
            )
            if not (self._released or self._interrupted()):
                await self._continue_as_new(index, True, None)
        finally:
            self._waiting_at_step = None

    # --- continue-as-new ------------------------------------------------------------------

    async def _continue_at_gate(self, remaining: timedelta | None) -> None:
        await self._continue_as_new(self._status.step_index, True, remaining)

    async def _continue_as_new(self, index: int, step_started: bool, bake_left: timedelta | None) -> None:
        """Carry the whole state into a fresh run, at a wait, never mid-change.

        `step_started` and `bake_left` say where the wait at step `index` stands. Returns
        (without continuing) if an abort, a failing analysis, a promote or the approval of the
        gate it waits at arrived meanwhile; the caller then handles it, with the analysis ticking
        again unless the rollout is stopping. Never runs the compensation.
        """
        await self._analysis.hand_over()
        await self._stop_watch()
        await self._observer.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        approved_here = self._gate is not None and self._approved
        if (
            self._stop is None
            and (approved_here or self._promote_requested)
            and workflow.patched("handover-keeps-late-steering")
        ):
            # An approve or a promote that landed during the handover is this run's to act on.
            # Runs from before this fix carried an approved gate into the next run, which waited
            # at it again, and left the analysis the handover stopped never ticking again.
            self._analysis.take_back()
            if workflow.patched("waits-read-the-router"):
                self._watch = asyncio.create_task(self._watch_traffic())  # the handover stopped it
            return
        if self._interrupted():
            return
        self._status.step_index = index
        self._status.continued_as_new += 1
        self._state.step_started, self._state.bake_remaining = step_started, bake_left
        workflow.continue_as_new(
            # Explicitly the same memo (the CLI's spec digest) and search attributes.
            memo=dict(workflow.memo()),
            search_attributes=workflow.info().typed_search_attributes,
            arg=self._input.model_copy(update={"carried": self._state}),
        )

    # --- analysis -------------------------------------------------------------------------

    def _pre_promotion_analysis(self) -> AnalysisSpec | None:
        """Blue/green's analysis of green before the switch, if the spec has one."""
        pre = self._spec.pre_promotion
        return pre.analysis if self._spec.strategy == "blue_green" and pre is not None else None

    def _start_analysis(self) -> None:
        """Start the analysis that applies now: before a blue/green switch the preview's, else the main."""
        weight = self._status.weights.canary if self._status.weights is not None else 0
        before_switch = self._spec.strategy == "blue_green" and weight == 0
        spec = self._pre_promotion_analysis() if before_switch else self._spec.analysis
        if spec is not None:
            self._analysis.start(spec)

    def _act_on(self, decision: Decision) -> None:
        """After each recorded tick: roll back, or pause for a human (`on_inconclusive: pause`)."""
        if decision.action == "rollback":
            self._stop = (Phase.ROLLED_BACK, decision.reason)
        elif decision.action == "pause" and not self._state.operator_paused:
            self._record_action("pause", decision.reason, "sluice")
            self._state.operator_paused = True
        self._publish()

    # --- drift: the router is the truth --------------------------------------------------

    def traffic_epoch(self) -> int:
        """Changes at the start and the end of every traffic change (`TrafficWatch`)."""
        return self._traffic_epoch

    async def found(
        self, state: TrafficState, epoch: int, on_drift: Literal["reapply", "pause", "rollback"]
    ) -> None:
        """An analysis tick read `state` from the router: show it, and handle a drift per `on_drift`.

        The read is dropped if a traffic change started or ended while it was taken (it may
        show the split before the change, or half of it), or once the rollout is ending. Else
        it becomes `status.weights`, and a split other than the one Sluice last applied is a
        drift: recorded in `status.drift` (loud in the UI, a `traffic_drifted` webhook once per
        drift) and handled: `reapply` sets the applied split again (every tick that finds it
        off), `pause` pauses once per drift for a human, leaving traffic where it was found,
        `rollback` rolls back.
        """
        if epoch != self._traffic_epoch or self._traffic_lock.locked() or self._interrupted():
            return
        if self._status.rollback is not None or self._status.phase.is_final:
            return
        if not workflow.patched("drift-is-noticed"):
            return
        now = workflow.now()
        read = Weights(stable=state.stable_weight, canary=state.canary_weight)
        self._status.weights, self._status.weights_at = read, now
        expected, drift = self._state.applied, self._status.drift
        # With several router instances, one reloaded instance is drift even if another still
        # has the split: the first instance off the expected split is the one reported.
        off = [w for w in [read, *state.instances] if w != expected]
        if expected is None or not off:
            if drift is not None and drift.resolved_at is None:
                drift.resolved_at = now
            self._publish()
            return
        read = off[0]
        if drift is None or drift.resolved_at is not None or drift.expected != expected:
            drift = Drift(
                expected=expected, found=read, since=now, at=now, detail=state.detail, action=on_drift
            )
            self._status.drift = drift
            first = True
        else:
            drift.found, drift.at, drift.detail, drift.action = read, now, state.detail, on_drift
            drift.count += 1
            first = False
        what = (
            f"traffic drifted: Sluice applied stable {expected.stable}% / new {expected.canary}% "
            f"but the router has stable {read.stable}% / new {read.canary}%"
        )
        if on_drift == "rollback":
            self._stop = (Phase.ROLLED_BACK, f"{what} (on_drift: rollback)")
        elif on_drift == "pause":
            if first and not self._state.operator_paused:
                self._record_action("pause", f"{what} (on_drift: pause)", "sluice")
                self._state.operator_paused = True
                self._status.message = f"PAUSED, {what}; fix the router or `sluice resume` / `abort`"
        else:
            before, self._status.message = self._status.message, f"{what}; re-applying it (on_drift: reapply)"
            self._publish()
            if await self._reapply(expected, drift):
                self._status.message = before
        self._publish()

    async def _watch_traffic(self) -> None:
        """Read the router every `TRAFFIC_WATCH_INTERVAL` while traffic was shifted and no analysis
        runs (whose ticks read it themselves): a rollout without analysis, waiting at a bake,
        `pause: {}` or an approval gate, notices drift too. Handled per `analysis.on_drift`, or
        re-applied when the spec has no analysis. A failed read is logged and tried next time.
        """
        spec = self._spec.analysis
        on_drift: Literal["reapply", "pause", "rollback"] = spec.on_drift if spec is not None else "reapply"
        while True:
            await workflow.wait_condition(
                lambda: (
                    self._status.traffic_touched
                    and not self._analysis.active
                    and not self._traffic_lock.locked()  # a shift under way may start the analysis
                )
            )
            await workflow.sleep(TRAFFIC_WATCH_INTERVAL, summary="next read of the router")
            if self._analysis.active or self._interrupted():
                continue
            epoch = self._traffic_epoch
            try:
                state = await workflow.execute_activity(
                    read_traffic,
                    ReadTrafficInput(router=self._spec.router),
                    start_to_close_timeout=TRAFFIC_TIMEOUT,
                    retry_policy=RetryPolicy(maximum_attempts=1),
                    summary="read the router's split",
                )
            except ActivityError as err:
                workflow.logger.warning("could not read the router's split: %s", failure_cause(err))
                continue
            await self.found(state, epoch, on_drift)

    async def _stop_watch(self) -> None:
        """End `_watch_traffic` and wait for it (a re-apply in flight finishes first)."""
        task, self._watch = self._watch, None
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _reapply(self, expected: Weights, drift: Drift) -> bool:
        """Set `expected` again, unless a traffic change or the end came first (False); a failure
        is said in the message (False) and waits for the next tick, which finds the drift again."""
        async with self._traffic_lock:
            if self._interrupted() or self._state.applied != expected:
                return False
            self._traffic_epoch += 1
            try:
                summary = f"re-apply {expected.canary}% (traffic drifted)"
                state = await self._set_traffic(expected.canary, summary)
            except ActivityError as err:
                self._status.message = (
                    f"TRAFFIC DRIFTED and re-applying stable {expected.stable}% / new {expected.canary}% "
                    f"failed: {failure_cause(err)}; the next analysis tick tries again"
                )
                return False
            finally:
                self._traffic_epoch += 1
            self._record_weights(state)
        drift.reapplied += 1
        drift.resolved_at = workflow.now()
        return True

    # --- compensation and the end -----------------------------------------------------------

    async def _compensate(self, phase: Phase, reason: str) -> None:
        """Put 100% on stable and verify it; retry in rounds until it works, saying so loudly."""
        await self._analysis.stop()
        await self._stop_watch()
        if not self._status.traffic_touched:
            await self._finish(phase, f"{reason}; traffic was never shifted, nothing to roll back")
            return
        self._status.rollback = RollbackState(reason=reason, started_at=workflow.now())
        self._status.phase = Phase.ROLLING_BACK
        self._status.message = f"rolling back to 100% stable: {reason}"
        self._publish()
        outcome = await self._roll_back_router(self._spec.router, reason, "")
        if isinstance(outcome, ActivityError):
            await self._finish(
                Phase.FAILED,
                "ROLLBACK FAILED, traffic may still reach the new version: "
                f"{failure_cause(outcome)}. Fix the router and put 100% on stable by hand.",
            )
            raise ApplicationError(
                f"rollback of {self._spec.service} could not complete: {failure_cause(outcome)}",
                type="RollbackFailed",
                non_retryable=True,
            ) from outcome
        self._status.rollback.verified_at = workflow.now()
        self._record_weights(outcome)
        await self._finish(phase, f"{reason}; 100% of traffic is back on stable (verified)")

    def _promoted_message(self) -> str:
        how = "promoted by an operator" if self._promote_requested else "all steps passed"
        text = f"{how}; 100% of traffic is on {self._spec.version} (verified)"
        if self._status.keep_stable_until is not None:
            stable = self._spec.stable_version or "stable"
            until = f"{self._status.keep_stable_until:%Y-%m-%d %H:%M:%S} UTC"
            text += f"; keep {stable} deployed until {until} (scale_down_delay)"
        return text

    # --- visibility -------------------------------------------------------------------------

    def _record_weights(self, state: TrafficState) -> None:
        """A split Sluice applied (or found at preflight) and read back: the one drift is measured from."""
        self._status.weights = Weights(stable=state.stable_weight, canary=state.canary_weight)
        self._status.weights_at = workflow.now()
        self._state.applied = self._status.weights
        self._publish()

    def _current_phase(self) -> Phase:
        if self._status.phase.is_final or self._status.phase is Phase.ROLLING_BACK:
            return self._status.phase
        if self._status.approval is not None:
            return Phase.AWAITING_APPROVAL
        if self._state.operator_paused or self._waiting_at_step is not None:
            return Phase.PAUSED
        return Phase.PROGRESSING

    def _search_weight(self) -> int:
        return self._status.weights.canary if self._status.weights else 0
