"""What `Rollout` and `RingRollout` share: the status they publish, operators and approvals, the end.

Both keep a `RolloutStatus` whose `actions` list is the audit trail (who, why, when, at which
step), publish it to the Web UI, search attributes and webhooks the same way, continue as
new at the same threshold, and wait at approval gates that the `approve` update (refused to
anyone not listed, leaving no history) or the `approve` signal (for the Web UI; a refusal is
recorded) passes. Temporal handlers stay on each workflow class; their bodies live here.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from sluice.contracts import errors
    from sluice.contracts import search_attributes as sa
    from sluice.contracts.calls import OperatorInput, RingRolloutInput, RolloutInput
    from sluice.contracts.spec import ApprovalSpec
    from sluice.contracts.status import OperatorAction, OperatorActionKind, Phase, RolloutStatus
    from sluice.contracts.text import cap
    from sluice.workflows.observe import RolloutObserver
    from sluice.workflows.render import current_details


class RolloutBase:
    """Base of both workflow classes: publishing, the action log, approvals, the end."""

    _input: RolloutInput | RingRolloutInput
    _status: RolloutStatus
    _observer: RolloutObserver
    _published: dict[str, str | int]
    """The search attributes last upserted."""
    _gate: ApprovalSpec | None
    """The approval gate waited at now, if any."""
    _approved: bool

    def _current_phase(self) -> Phase:
        """The phase the status shows now (each workflow derives it from its own state)."""
        raise NotImplementedError

    def _search_weight(self) -> int:
        """`SluiceWeight`: the new version's percentage (of traffic, or of rings)."""
        raise NotImplementedError

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

    def _record_action(self, action: OperatorActionKind, reason: str, by: str) -> None:
        self._status.actions.append(
            OperatorAction(
                action=action,
                reason=reason,
                by=by or "unknown",
                at=workflow.now(),
                step_index=self._status.step_index,
            )
        )

    def _grant(self, inp: OperatorInput) -> None:
        """Pass the gate that waits, on behalf of `inp.by` (already checked)."""
        self._record_action("approve", inp.reason, inp.by)
        self._approved = True
        self._publish()

    def _approve_by_signal(self, inp: OperatorInput) -> None:
        """The `approve` signal: the update's checks, but a refusal is recorded, not raised."""
        try:
            check_approval(self._gate, self._status, inp)
        except ApplicationError as refused:
            reason = f"{refused.message} (their reason: {inp.reason or 'none given'})"
            self._record_action("approve_refused", reason, inp.by)
            self._publish()
            return
        self._grant(inp)


def check_approval(gate: ApprovalSpec | None, status: RolloutStatus, inp: OperatorInput) -> None:
    """The approve update's validator: reject (no history) unless a gate waits and `by` may approve."""
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


def failure_cause(err: BaseException) -> str:
    """The innermost message of a Temporal failure chain, capped to keep payloads small."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err) or type(err).__name__
    return cap(text)
