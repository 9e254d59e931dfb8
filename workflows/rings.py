"""The ring rollout: one child `Rollout` per ring, in order, with a saga that rolls earlier rings back.

A ring that fails rolls itself back (its own child's compensation); then the parent puts
100% back on stable in every earlier ring, newest first, unless the spec says
`earlier_rings_on_failure: stay`. The same happens on `abort`, on a Temporal cancel (also
while a child runs or a gate waits) and when a child fails for good. Continue-as-new (only
between rings, at an approval gate) and bugs in this code never trigger it. A ring whose
router refuses the rollback for good does not stop the saga: the other rings are still rolled
back, and the ring rollout then fails (`RollbackFailed`) saying which rings are where.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from sluice.contracts import names
    from sluice.contracts.calls import (
        OperatorInput,
        RingCarriedState,
        RingRolloutInput,
        RolloutInput,
    )
    from sluice.contracts.spec import ApprovalSpec, RingRolloutSpec
    from sluice.contracts.status import (
        TOO_LATE,
        OperatorActionKind,
        Phase,
        RingStatus,
        RollbackState,
        RolloutStatus,
        Weights,
    )
    from sluice.workflows.observe import RolloutObserver
    from sluice.workflows.rollout import RolloutWorkflow
    from sluice.workflows.steering import RolloutBase, check_approval, failure_cause


def ring_workflow_id(parent_id: str, ring: str) -> str:
    """`rollout-checkout-ring-eu`: the child rollout of one ring."""
    return f"{parent_id}-ring-{ring}"


@workflow.defn(name=names.RING_WORKFLOW_TYPE)
class RingRolloutWorkflow(RolloutBase):
    """A release rolled out ring by ring, identified by `rollout-<service>` like a single rollout."""

    _input: RingRolloutInput
    _state: RingCarriedState

    @workflow.init
    def __init__(self, inp: RingRolloutInput) -> None:
        self._spec: RingRolloutSpec = inp.spec
        self._input = inp
        parent_id = workflow.info().workflow_id
        rings = inp.spec.rings
        self._state = (
            inp.carried.model_copy(deep=True)
            if inp.carried is not None
            else RingCarriedState(
                status=RolloutStatus(
                    service=inp.spec.service,
                    version=inp.spec.version,
                    stable_version=inp.spec.stable_version,
                    spec_digest=inp.spec_digest,
                    phase=Phase.PROGRESSING,
                    message=f"ring 1/{len(rings)}: {rings[0].name}",
                    step_index=0,
                    step_count=len(rings),
                    step=f"ring {rings[0].name}",
                    started_at=workflow.now(),
                    strategy="rings",
                    rings=[
                        RingStatus(name=r.name, workflow_id=ring_workflow_id(parent_id, r.name))
                        for r in rings
                    ],
                ),
                next_ring=0,
                gate_pending=False,
            )
        )
        """Every ring's status, the next ring, the gate before it, the promoted rings: carried whole."""
        self._child: workflow.ChildWorkflowHandle[RolloutWorkflow, RolloutStatus] | None = None
        self._stop: tuple[Phase, str] | None = None
        self._gate: ApprovalSpec | None = None
        self._approved = False
        self._published: dict[str, str | int] = {}
        # Webhooks for the ring rollout as a whole (each ring's rollout sends its own too).
        self._observer = RolloutObserver(
            inp.spec, inp.carried.status if inp.carried else None, count_metrics=False
        )

    # --- entry point ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: RingRolloutInput) -> RolloutStatus:
        """Roll out every ring in order; on a failure, roll back in reverse order (the saga)."""
        self._publish()
        return await self._run_to_the_end(Phase.FAILED, "ring rollout failed")

    async def _advance(self) -> RolloutStatus | None:
        while self._state.next_ring < len(self._spec.rings) and self._stop is None:
            index = self._state.next_ring
            if self._state.gate_pending:
                await self._gate_before(index)
                if self._stop is not None:
                    break
            result = await self._run_ring(index)
            if result.phase is not Phase.PROMOTED:
                # The ring rolled itself back (its own rollout's compensation); the saga does the rest.
                self._stop = (result.phase, f"ring {self._spec.rings[index].name}: {result.message}")
                break
            self._state.promoted_rings.append(index)
            self._state.next_ring = index + 1
            self._state.gate_pending = self._spec.rings[index].approval is not None
            self._state.gate_remaining = None
        if self._stop is not None:
            return None
        return await self._finish(
            Phase.PROMOTED,
            f"all {len(self._spec.rings)} rings promoted; 100% on {self._spec.version}",
        )

    # --- rings ------------------------------------------------------------------------------

    async def _run_ring(self, index: int) -> RolloutStatus:
        ring = self._spec.rings[index]
        state = self._status.rings[index]
        state.phase, state.started_at = Phase.PROGRESSING, workflow.now()
        self._status.step_index, self._status.step = index, f"ring {ring.name}"
        self._status.message = f"ring {index + 1}/{len(self._spec.rings)}: rolling out {ring.name}"
        self._publish()
        spec = self._spec.ring_spec(index)
        self._child = await workflow.start_child_workflow(
            RolloutWorkflow.run,
            RolloutInput(
                spec=spec,
                spec_digest=self._input.spec_digest,
                started_by=self._input.started_by,
                continue_as_new_after_events=self._input.continue_as_new_after_events,
                ring=ring.name,
            ),
            id=state.workflow_id,
            # A cancel reaches the child, which rolls its ring back before the saga continues.
            cancellation_type=workflow.ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
            static_summary=f"{spec.service} ring {ring.name}: {_versions(spec.stable_version, spec.version)}",
        )
        try:
            result = await self._child
        except ChildWorkflowError as err:
            # The child was cancelled (it rolled back first) or failed (e.g. its rollback could not complete).
            state.phase, state.message, state.finished_at = Phase.FAILED, failure_cause(err), workflow.now()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                state.phase = Phase.ABORTED
                raise asyncio.CancelledError() from err
            raise ApplicationError(f"ring {ring.name}: {failure_cause(err)}", type="RingFailed") from err
        finally:
            self._child = None
        state.phase, state.message, state.finished_at = result.phase, result.message, workflow.now()
        state.weights = result.weights
        self._publish()
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The child finished as the cancel arrived, swallowing it: the saga must still run,
            # and a ring that just got promoted is one of the rings to roll back.
            if result.phase is Phase.PROMOTED:
                self._state.promoted_rings.append(index)
                self._state.next_ring = index + 1
            raise asyncio.CancelledError()
        return result

    async def _gate_before(self, index: int) -> None:
        """The approval gate after ring `index - 1`, before ring `index` starts."""
        done, ring = self._spec.rings[index - 1].name, self._spec.rings[index].name
        gate = self._spec.rings[index - 1].approval
        assert gate is not None
        message = (
            f"ring {done} is promoted; waiting for approval to start ring {ring} "
            f"(`sluice approve {self._spec.service} --by NAME --reason R`)"
        )
        await self._await_approval(
            gate, f"{gate.describe()} before ring {ring}", message, self._state.gate_remaining
        )
        self._state.gate_pending = False

    async def _continue_at_gate(self, remaining: timedelta | None) -> None:
        await self._continue_as_new(remaining)

    # --- the saga ---------------------------------------------------------------------------

    async def _compensate(self, phase: Phase, reason: str) -> None:
        """The saga: roll back the promoted rings before the current one, newest first (unless they stay).

        The current ring rolled itself back in its own rollout; rings after it never started.
        Each earlier ring's rollback retries until verified (loud in the status while stuck);
        a ring whose router refuses it for good is left as it is, the others are still rolled
        back, and then the ring rollout fails with `RollbackFailed`, saying which rings are where.
        """
        earlier = [i for i in reversed(self._state.promoted_rings) if i < self._state.next_ring]
        if earlier and self._spec.earlier_rings_on_failure == "stay":
            names_ = ", ".join(self._spec.rings[i].name for i in earlier)
            await self._finish(phase, f"{reason}; earlier rings stay on the new version ({names_})")
            return
        if not earlier:
            await self._finish(phase, reason)
            return
        self._status.phase = Phase.ROLLING_BACK
        self._status.rollback = RollbackState(reason=reason, started_at=workflow.now())
        refused: list[ActivityError] = []
        for i in earlier:
            ring = self._spec.rings[i]
            state = self._status.rings[i]
            state.phase, state.message = Phase.ROLLING_BACK, f"rolling back: {reason}"
            self._status.message = f"rolling back ring {ring.name} to 100% stable: {reason}"
            self._publish()
            outcome = await self._roll_back_router(
                ring.router,
                reason,
                f" ring {ring.name}",
                ring=state,
                # Runs from before this exit retried a refused rollback forever.
                gives_up=lambda: workflow.patched("ring-rollback-gives-up-when-refused"),
            )
            if isinstance(outcome, ActivityError):
                state.phase, state.finished_at = Phase.FAILED, workflow.now()
                state.message = f"ROLLBACK FAILED, still on the new version: {failure_cause(outcome)}"
                refused.append(outcome)
                self._publish()
                continue
            state.phase, state.finished_at = Phase.ROLLED_BACK, workflow.now()
            state.weights = Weights(stable=outcome.stable_weight, canary=outcome.canary_weight)
            state.message = "rolled back by the saga; 100% on stable (verified)"
            self._publish()
        if refused:
            await self._fail_rollback(refused)
        self._status.rollback.verified_at = workflow.now()
        names_ = ", ".join(self._spec.rings[i].name for i in earlier)
        await self._finish(
            phase, f"{reason}; earlier rings rolled back in reverse order ({names_}), verified"
        )

    async def _fail_rollback(self, refused: list[ActivityError]) -> None:
        """End FAILED, naming the rings back on stable, those still on the new version, those not started."""
        where: dict[str, list[str]] = {}
        for ring in self._status.rings:
            if ring.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
                where.setdefault("back on stable", []).append(ring.name)
            elif ring.phase == "pending":
                where.setdefault("not started", []).append(ring.name)
            else:
                where.setdefault("still on the new version", []).append(ring.name)
        rings = "; ".join(f"{state}: {', '.join(names_)}" for state, names_ in where.items())
        cause = failure_cause(refused[0])
        await self._finish(
            Phase.FAILED,
            f"ROLLBACK FAILED, traffic may still reach the new version: {cause}. Rings {rings}. "
            "Fix those routers and put 100% on stable there by hand.",
        )
        raise ApplicationError(
            f"rollback of {self._spec.service} could not complete: {cause} ({rings})",
            type="RollbackFailed",
            non_retryable=True,
        ) from refused[0]

    # --- continue-as-new --------------------------------------------------------------------

    async def _continue_as_new(self, gate_left: timedelta | None) -> None:
        """Only between rings (no child runs), at the gate: carry the state whole, with `gate_left`."""
        await self._observer.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._stop is not None or self._approved:
            return
        self._status.continued_as_new += 1
        self._state.gate_remaining = gate_left
        workflow.continue_as_new(self._input.model_copy(update={"carried": self._state}))

    # --- operator steering ------------------------------------------------------------------

    @workflow.signal(name=names.SIGNAL_PAUSE)
    async def pause(self, inp: OperatorInput) -> None:
        """Pause the ring rolling out now (forwarded to its rollout)."""
        await self._forward(names.SIGNAL_PAUSE, "pause", inp)

    @workflow.signal(name=names.SIGNAL_RESUME)
    async def resume(self, inp: OperatorInput) -> None:
        """Resume the ring rolling out now (forwarded to its rollout)."""
        await self._forward(names.SIGNAL_RESUME, "resume", inp)

    @workflow.signal(name=names.SIGNAL_PROMOTE)
    async def promote(self, inp: OperatorInput) -> None:
        """Promote the ring rolling out now (forwarded); later rings still run their steps."""
        await self._forward(names.SIGNAL_PROMOTE, "promote", inp)

    @workflow.signal(name=names.SIGNAL_ABORT)
    async def abort(self, inp: OperatorInput) -> None:
        """Roll back the running ring, then every earlier one (unless they stay)."""
        if not self._accepts("abort", inp):
            return
        reason = f"aborted by {inp.by or 'an operator'}: {inp.reason or 'no reason given'}"
        if self._child is not None:
            await self._child.signal(names.SIGNAL_ABORT, inp)
        else:
            self._stop = (Phase.ABORTED, reason)
        self._publish()

    async def _forward(self, signal: str, action: OperatorActionKind, inp: OperatorInput) -> None:
        # At the gate between rings no ring runs: `resume` and `promote` are refused with the hint.
        if action != "pause" and self._refused_at_gate(action, inp, promote_passes=False):
            return
        if self._child is not None and self._accepts(action, inp):
            await self._child.signal(signal, inp)

    @workflow.update(name=names.UPDATE_APPROVE)
    async def approve(self, inp: OperatorInput) -> RolloutStatus:
        """Pass the gate between two rings; the validator rejects anyone not listed."""
        return await self._approve(inp)

    @workflow.signal(name=names.SIGNAL_APPROVE)
    async def approve_signal(self, inp: OperatorInput) -> None:
        """The approval as a signal: the gate between rings if one waits, else the running ring's."""
        if self._gate is None and self._child is not None:
            await self._child.signal(names.SIGNAL_APPROVE, inp)
        else:
            self._approve_by_signal(inp)

    @approve.validator
    def _check_approval(self, inp: OperatorInput) -> None:
        check_approval(self._gate, self._status, inp)

    @workflow.query(name=names.QUERY_STATUS)
    def status(self) -> RolloutStatus:
        """Overall phase, the ring rolling out, every ring's phase and weights, operator actions."""
        return self._status

    def _accepts(self, action: OperatorActionKind, inp: OperatorInput) -> bool:
        """Record an operator action; once the rollout is ending it has no effect, and is recorded
        as `<action>_too_late` with who and why (runs from before that rule dropped it)."""
        if self._status.phase.is_final or self._stop is not None or self._status.phase is Phase.ROLLING_BACK:
            if workflow.patched("late-signals-are-recorded"):
                ending = f"already {self._status.phase.value}" if self._status.phase.is_final else "ending"
                why = inp.reason or "none given"
                reason = f"arrived too late, the rollout is {ending}; their reason: {why}"
                self._record_action(TOO_LATE[action], reason, inp.by)
                self._publish()
            return False
        self._record_action(action, inp.reason, inp.by)
        return True

    def _current_phase(self) -> Phase:
        status = self._status
        if status.phase.is_final or status.phase is Phase.ROLLING_BACK:
            return status.phase
        return Phase.AWAITING_APPROVAL if status.approval is not None else Phase.PROGRESSING

    def _search_weight(self) -> int:
        # SluiceWeight of a ring rollout: percent of rings fully on the new version.
        rings = self._status.rings
        promoted = sum(1 for r in rings if r.phase is Phase.PROMOTED)
        return round(100 * promoted / len(rings)) if rings else 0


def _versions(stable: str | None, new: str) -> str:
    return f"{stable or 'stable'} → {new}"
