"""What `Rollout` and `RingRollout` share about operators: recording actions and approving gates.

Both keep a `RolloutStatus` whose `actions` list is the audit trail (who, why, when, at which
step), and both wait at approval gates that the `approve` update (refused to anyone not
listed, leaving no history) or the `approve` signal (for the Web UI; a refusal is recorded)
passes. The handlers stay on each workflow class; their bodies live here.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts import errors
    from contracts.calls import OperatorInput
    from contracts.spec import ApprovalSpec
    from contracts.status import OperatorAction, OperatorActionKind, RolloutStatus


class OperatorSteering:
    """Mixin: the action log and approval state of a workflow that operators steer."""

    _status: RolloutStatus
    _gate: ApprovalSpec | None
    """The approval gate waited at now, if any."""
    _approved: bool

    def _publish(self) -> None:
        """Refresh the phase, the UI and search attributes (each workflow has its own)."""
        raise NotImplementedError

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
