"""What `Rollout` and `RingRollout` share: publishing, operators and approvals, compensation, the end.

Both keep a `RolloutStatus` whose `actions` list is the audit trail (who, why, when, at which
step), publish it to the Web UI, search attributes and webhooks the same way, continue as
new at the same threshold, and wait at approval gates that the `approve` update (refused to
anyone not listed, leaving no history) or the `approve` signal (for the Web UI; a refusal is
recorded) passes. Both run their steps (or rings) under one rule: a cancel or a failure rolls
traffic back, continue-as-new and bugs in workflow code never do; and both roll a router back
with one loop that retries until the split is verified, says loudly while it is stuck, and
gives up only on an error that no retry can fix. Temporal handlers stay on each workflow
class; their bodies live here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from sluice.activities.approvals import verify_approval
    from sluice.activities.rollout import rollback_traffic
    from sluice.contracts import errors
    from sluice.contracts import search_attributes as sa
    from sluice.contracts.approvals import statement_problem
    from sluice.contracts.calls import (
        CarriedState,
        OperatorInput,
        RingCarriedState,
        RingRolloutInput,
        RollbackInput,
        RolloutInput,
        TrafficState,
        VerifyApprovalInput,
    )
    from sluice.contracts.durations import format_duration
    from sluice.contracts.spec import ApprovalSpec, RouterSpec
    from sluice.contracts.status import (
        ApprovalWait,
        OperatorAction,
        OperatorActionKind,
        Phase,
        RingStatus,
        RolloutStatus,
        refusal_at_gate,
    )
    from sluice.contracts.text import cap
    from sluice.workflows.observe import RolloutObserver
    from sluice.workflows.render import current_details

GATES_HOLD = "gates-hold-for-every-verb"
"""Patch: at a waiting gate `resume` and a non-approver's `promote` are refused and recorded.
Runs from before it took a `resume` there as done, and let anyone's `promote` skip the gate."""

VERIFY_TIMEOUT = timedelta(seconds=15)
"""One `ssh-keygen -Y verify` of a signed approval: well under a second when the worker is well."""

ACTIVITY_TIMEOUT = timedelta(seconds=30)
"""Preflight: reads only, and nothing waits on it but the start."""

TRAFFIC_TIMEOUT = timedelta(seconds=10)
"""One attempt at a weight change or a rollback (write, then read back). A router answers in
well under a second (HAProxy's runtime API cuts itself off at `router.timeout`, 5 s by
default), so an attempt still running after this is lost or hung. The change is declarative,
so another worker retries it after this long instead of the 30 s it used to take, which left
a split half applied for up to 31 s when a worker died mid-change."""

ROLLBACK_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=[errors.ROUTER_CONFIG, errors.ROUTER_REJECTED],
)
"""One round of rollback attempts; the workflow loops over rounds until traffic is back on stable,
recording each stuck round in the status so it is visible while it lasts."""


class RolloutBase:
    """Base of both workflow classes: publishing, the action log, approvals, the end."""

    _input: RolloutInput | RingRolloutInput
    _state: CarriedState | RingCarriedState
    """What the workflow carries whole into its next run when it continues as new."""
    _observer: RolloutObserver
    _published: dict[str, str | int]
    """The search attributes last upserted."""
    _gate: ApprovalSpec | None
    """The approval gate waited at now, if any."""
    _approved: bool
    _stop: tuple[Phase, str] | None
    """Set once the rollout must end with a rollback: the phase it ends in and why."""

    @property
    def _status(self) -> RolloutStatus:
        """What the status query shows; part of the carried state."""
        return self._state.status

    # --- what each workflow defines ---------------------------------------------------------

    def _current_phase(self) -> Phase:
        """The phase the status shows now (each workflow derives it from its own state)."""
        raise NotImplementedError

    def _search_weight(self) -> int:
        """`SluiceWeight`: the new version's percentage (of traffic, or of rings)."""
        raise NotImplementedError

    def _interrupted(self) -> bool:
        """True once a wait must end early: the rollout is stopping (or, for a rollout, promoting)."""
        return self._stop is not None

    async def _advance(self) -> RolloutStatus | None:
        """Run the steps (or rings); the final status if the rollout ended by itself, else None
        with `_stop` set. May raise: a cancel or a failure is compensated by `_run_to_the_end`."""
        raise NotImplementedError

    async def _compensate(self, phase: Phase, reason: str) -> None:
        """Put traffic back on stable wherever this rollout moved it, then `_finish` in `phase`."""
        raise NotImplementedError

    async def _continue_at_gate(self, remaining: timedelta | None) -> None:
        """Continue as new while waiting at the approval gate, `remaining` of its timeout left.
        Returns (without continuing) if the wait ended meanwhile."""
        raise NotImplementedError

    # --- the run, the gate, the rollback ------------------------------------------------------

    async def _run_to_the_end(self, failed_phase: Phase, failed_what: str) -> RolloutStatus:
        """`_advance`, and compensate however it ends unless it promoted.

        A Temporal cancel (also during a timer: `asyncio.CancelledError`, not an `Exception`)
        ends ABORTED and re-raises; a failure (an activity or child that failed for good) ends
        in `failed_phase` with `failed_what` and the cause; `_stop` ends as it says. Anything
        else, continue-as-new or a bug in workflow code, propagates without compensating: the
        task fails and is retried while traffic stays where it is.
        """
        try:
            ended = await self._advance()
        except BaseException as err:
            cancelled = isinstance(err, asyncio.CancelledError)
            if not (cancelled or workflow.is_failure_exception(err)):
                raise
            if cancelled:
                self._record_action("cancel", "Temporal cancel request", "temporal")
                await self._compensate(Phase.ABORTED, "the workflow was cancelled")
                raise
            await self._compensate(failed_phase, f"{failed_what}: {failure_cause(err)}")
            return self._status
        if ended is not None:
            return ended
        assert self._stop is not None
        await self._compensate(*self._stop)
        return self._status

    async def _await_approval(
        self, gate: ApprovalSpec, step: str, message: str, left: timedelta | None
    ) -> None:
        """Wait at `gate` for an accepted approval, an interruption, or the gate's timeout.

        `left` is set when an earlier run continued as new at this gate: the carried
        `status.approval` keeps its deadline to the millisecond. On timeout the action
        `approval_timeout` is recorded and `on_timeout: rollback` sets `_stop`. While the
        history is full the gate continues as new (`_continue_at_gate`) and is carried as it
        is; however else the wait ends, the gate is cleared.
        """
        now = workflow.now()
        carried = self._status.approval
        if left is not None and carried is not None and carried.deadline is not None:
            timeout: timedelta | None = max(carried.deadline - now, timedelta(milliseconds=1))
        else:
            timeout = left if left is not None else gate.timeout
            self._status.approval = ApprovalWait(
                step=step,
                approvers=list(gate.approvers),
                since=now,
                deadline=now + timeout if timeout is not None else None,
                on_timeout=gate.on_timeout,
                require_verified=gate.require_verified,
            )
        self._gate, self._approved = gate, False
        self._status.message = message
        self._publish()
        try:
            try:
                await workflow.wait_condition(
                    lambda: self._approved or self._interrupted() or self._history_full(),
                    timeout=timeout,
                    timeout_summary=f"approval gate {format_duration(timeout)}" if timeout else None,
                )
            except TimeoutError:
                assert gate.timeout is not None
                reason = f"no approval within {format_duration(gate.timeout)}; on_timeout: {gate.on_timeout}"
                self._record_action("approval_timeout", reason, "sluice")
                if gate.on_timeout == "rollback":
                    self._stop = (Phase.ROLLED_BACK, f"approval gate timed out: {reason}")
                # Runs from before this fix kept the timed-out gate: it still showed as awaiting
                # approval and took approvals meant for the next gate.
                if workflow.patched("approval-timeout-clears-the-gate"):
                    self._gate, self._status.approval = None, None
                return
            if not (self._approved or self._interrupted()):
                remaining = None
                if timeout is not None:
                    remaining = max(timeout - (workflow.now() - now), timedelta(milliseconds=1))
                await self._continue_at_gate(remaining)
        except workflow.ContinueAsNewError:
            raise  # the gate (and its deadline) is carried into the next run as it is
        except BaseException:
            self._gate, self._status.approval = None, None
            raise
        self._gate, self._status.approval = None, None

    async def _roll_back_router(
        self,
        router: RouterSpec,
        reason: str,
        where: str,
        ring: RingStatus | None = None,
        gives_up: Callable[[], bool] = lambda: True,
    ) -> TrafficState | ActivityError:
        """Put 100% on stable through `router` and read it back, in rounds until it works.

        Counts attempts and the last error in `status.rollback` (set by the caller). A round
        that fails with a retryable error is reported loudly (the message, and `ring`'s line
        if given) and retried. An error no retry can fix (the router refused: `RouterConfig`,
        `RouterRejected`) is returned, and the caller ends the rollout FAILED, unless
        `gives_up()` says this run predates that exit. Returns the verified split otherwise.
        """
        record = self._status.rollback
        assert record is not None
        while True:
            try:
                state = await workflow.execute_activity(
                    rollback_traffic,
                    RollbackInput(router=router, reason=reason),
                    start_to_close_timeout=TRAFFIC_TIMEOUT,
                    retry_policy=ROLLBACK_RETRY,
                    summary=f"roll back{where} to 100% stable",
                )
            except ActivityError as err:
                record.attempts += ROLLBACK_RETRY.maximum_attempts
                record.last_error = failure_cause(err)
                if non_retryable(err) and gives_up():
                    return err
                self._status.message = (
                    f"ROLLBACK{where} STUCK after {record.attempts} attempts, still "
                    f"retrying: {record.last_error}"
                )
                if ring is not None:
                    ring.message = f"ROLLBACK STUCK, still retrying: {record.last_error}"
                self._publish()
                continue
            record.attempts += state.attempt
            return state

    def _publish(self) -> None:
        """Refresh the phase, the UI's current-details panel, changed search attributes, webhooks."""
        self._status.phase = self._current_phase()
        weight = self._search_weight()
        wanted: dict[str, str | int] = {sa.PHASE.name: self._status.phase.value, sa.WEIGHT.name: weight}
        # Only keep up attributes the starter set: a server without them registered (the
        # time-skipping test server) would fail the workflow task on an upsert.
        if wanted != self._published and workflow.info().typed_search_attributes.get(sa.PHASE) is not None:
            self._published = wanted
            workflow.upsert_search_attributes(
                [sa.PHASE.value_set(self._status.phase.value), sa.WEIGHT.value_set(weight)]
            )
        workflow.set_current_details(current_details(self._status))
        self._observer.changed(self._status)

    async def _finish(self, phase: Phase, message: str) -> RolloutStatus:
        """End in `phase`: publish it, give webhooks their time, let handlers finish."""
        self._status.phase = phase
        self._status.message = message
        self._status.finished_at = workflow.now()
        self._publish()
        await self._observer.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status

    def _history_full(self) -> bool:
        """Time to continue as new: Temporal suggests it, or the input's test threshold is met."""
        info = workflow.info()
        limit = self._input.continue_as_new_after_events
        return info.is_continue_as_new_suggested() or (
            limit is not None and info.get_current_history_length() >= limit
        )

    def _record_action(
        self, action: OperatorActionKind, reason: str, by: str, verified: bool = False
    ) -> None:
        approval = self._status.approval
        self._status.actions.append(
            OperatorAction(
                action=action,
                reason=reason,
                by=by or "unknown",
                at=workflow.now(),
                step_index=self._status.step_index,
                gate=approval.step if approval is not None else None,
                verified=verified,
            )
        )

    def _refused_at_gate(
        self, verb: OperatorActionKind, inp: OperatorInput, promote_passes: bool = True
    ) -> bool:
        """True, with a `<verb>_refused` action recorded, if `verb` would go past the waiting gate
        and may not (see `refusal_at_gate`); a signal cannot be refused to its sender."""
        approval = self._status.approval
        if self._gate is None or approval is None or self._status.phase.is_final:
            return False
        why = refusal_at_gate(approval, self._status.service, verb, inp.by, promote_passes)
        if why is None or not workflow.patched(GATES_HOLD):
            return False
        refused: OperatorActionKind = "promote_refused" if verb == "promote" else "resume_refused"
        self._record_action(refused, f"{why} (their reason: {inp.reason or 'none given'})", inp.by)
        self._publish()
        return True

    def _grant(self, inp: OperatorInput, verified: bool = False) -> None:
        """Pass the gate that waits, on behalf of `inp.by` (already checked)."""
        self._record_action("approve", inp.reason, inp.by, verified)
        self._approved = True
        self._publish()

    async def _approve(self, inp: OperatorInput) -> RolloutStatus:
        """The approve update's handler (after `check_approval`): a plain approval passes at
        once; a signed one only once its statement matches this gate and its signature verifies
        against the worker's allowed signers (else refused, recorded, and the update fails)."""
        if not (inp.signature or inp.statement):
            self._grant(inp)
            return self._status
        approval = self._status.approval
        assert approval is not None  # the validator let it through: a gate waits
        info = workflow.info()
        problem = statement_problem(
            inp.statement,
            info.workflow_id,
            info.run_id,
            approval.step,
            approval.since,
            inp.by,
            workflow.now(),
        )
        if problem is None:
            checked = await workflow.execute_activity(
                verify_approval,
                VerifyApprovalInput(statement=inp.statement, signature=inp.signature, principal=inp.by),
                start_to_close_timeout=VERIFY_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary=f"verify {inp.by}'s signed approval"[:200],
            )
            problem = None if checked.verified else checked.reason
        if problem is None and self._status.approval is not approval:
            problem = "the gate stopped waiting while the signature was checked"
        if problem is not None:
            self._record_action(
                "approve_refused", f"{problem} (their reason: {inp.reason or 'none given'})", inp.by
            )
            self._publish()
            raise ApplicationError(problem, type=errors.APPROVAL_NOT_VERIFIED, non_retryable=True)
        self._grant(inp, verified=True)
        return self._status

    def _approve_by_signal(self, inp: OperatorInput) -> None:
        """The `approve` signal: the update's checks, but a refusal is recorded, not raised."""
        try:
            check_approval(self._gate, self._status, inp, by_signal=True)
        except ApplicationError as refused:
            reason = f"{refused.message} (their reason: {inp.reason or 'none given'})"
            self._record_action("approve_refused", reason, inp.by)
            self._publish()
            return
        self._grant(inp)


def check_approval(
    gate: ApprovalSpec | None, status: RolloutStatus, inp: OperatorInput, by_signal: bool = False
) -> None:
    """The approve update's validator: reject (no history) unless a gate waits and `by` may
    approve; at a gate that requires a signed approval, unless it is signed (and an update:
    a signal's handler cannot run the verification)."""
    if gate is None or status.phase.is_final or status.rollback is not None:
        raise ApplicationError(
            f"{status.service} is not waiting for an approval "
            f"(phase {status.phase.value}, step {status.step})",
            type=errors.NOT_WAITING_FOR_APPROVAL,
            non_retryable=True,
        )
    if not inp.by.strip():
        raise ApplicationError("an approval must say who approves (`by`)", type=errors.NOT_AN_APPROVER)
    if gate.approvers and inp.by not in gate.approvers:
        raise ApplicationError(
            f"{inp.by!r} may not approve this gate; approvers: {', '.join(gate.approvers)}",
            type=errors.NOT_AN_APPROVER,
            non_retryable=True,
        )
    if gate.require_verified and (by_signal or not inp.signature):
        raise ApplicationError(
            "this gate requires a signed approval: `sluice approve "
            f"{status.service} --by NAME --reason R --sign-with KEY` (an unsigned `by` is not enough)",
            type=errors.APPROVAL_NOT_VERIFIED,
            non_retryable=True,
        )


def non_retryable(err: ActivityError) -> bool:
    """True if the activity failed with an error its retry policy does not retry."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.non_retryable


def failure_cause(err: BaseException) -> str:
    """The innermost message of a Temporal failure chain, capped to keep payloads small."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err) or type(err).__name__
    return cap(text)
