"""`sluice abort --force`: 100% on stable from where the CLI runs, for a rollout that cannot act.

The last resort when the workflow cannot run its own compensation (its task keeps failing,
no worker answers, the history is wedged). In this order, so that nothing is touched
unless all of it can be done:

1. read the rollout's routers from the first event of its history (no worker needed);
2. check every router answers (`preflight`; a split a rollout could not *start* from is
   fine here: that is why we are here) and read its weights; any router that does not
   answer refuses the whole command, nothing touched (`RouterUnreachable`);
3. send the `abort` signal with who and why (recorded in the history; should a worker
   come back before step 5, the workflow's own rollback goes the same way);
4. set 100% stable on every router with the activities' own router code, which reads it
   back; retried briefly, and `TrafficNotVerified` (workflow left running) if it never reads back;
5. terminate the workflow, the reason naming who did it and the weights read back;
6. read every router once more: a traffic activity still in flight on a worker when the
   workflow was terminated could finish after it. A moved split is set back and reported.

Terminate skips the workflow's compensation: that is the point here, and why this is the
last resort (docs/operations.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from sluice.activities.routers import TrafficRouter, router_for
from sluice.contracts import errors
from sluice.contracts.calls import OperatorInput, TrafficState
from sluice.contracts.names import SIGNAL_ABORT
from sluice.contracts.status import Phase, RolloutStatus
from sluice.contracts.text import cap
from sluice.runtime.client import FORCED_ABORT, RolloutNotRunning, RolloutRecord, SluiceError
from sluice.runtime.history import RunRouter, SpecUnreadable, started_with

if TYPE_CHECKING:
    from sluice.runtime.client import SluiceClient

ROUTER_CALL_TIMEOUT = 30.0
"""No single router call may hang the break glass for longer than this."""
APPLY_ATTEMPTS = 3
"""Tries of `set_weights(0)` per router (a read-back that differs is retried, as the activity is)."""
VERIFIED_PHASES = (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED)
"""Final phases whose split the workflow read back itself; `failed` (a rollback that could not
complete, e.g. a ring rollout whose ring failed so) did not."""


class BreakGlassRefused(SluiceError):
    """`abort --force` touched nothing: the spec could not be read, or a router did not answer."""

    def __init__(self, message: str, workflow_id: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id


class RouterUnreachable(BreakGlassRefused):
    """A router did not answer the preflight; `failures` names each one. Nothing was touched."""

    def __init__(self, message: str, workflow_id: str, failures: list[str]) -> None:
        super().__init__(message, workflow_id)
        self.failures = failures


class TrafficNotVerified(SluiceError):
    """100% stable was sent but not read back on every router; the workflow was left running."""

    def __init__(self, message: str, workflow_id: str, states: list[RouterSplit]) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.states = states


class WorkflowNotEnded(SluiceError):
    """100% stable was applied and read back, but Temporal refused to terminate the workflow."""

    def __init__(self, message: str, workflow_id: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id


@dataclass(frozen=True)
class RouterSplit:
    """One router: its split before the break glass and as read back after (None: not read)."""

    label: str
    before: TrafficState | None
    after: TrafficState | None
    error: str | None = None

    @property
    def verified(self) -> bool:
        return self.after is not None and self.after.stable_weight == 100 and self.after.canary_weight == 0

    def words(self) -> str:
        """`haproxy ...: stable 70 / canary 30 → stable 100 / canary 0 (weights ...)`."""
        was = _split(self.before) if self.before else "?"
        now = f"{_split(self.after)} ({self.after.detail})" if self.after else f"not applied: {self.error}"
        return f"{self.label}: {was} → {now}"


@dataclass(frozen=True)
class ForcedAbort:
    """What `abort --force` did. `routers` holds each split as read back at the very end."""

    workflow_id: str
    run_id: str
    service: str
    version: str | None
    operator: OperatorInput
    temporal_status: str
    """The run's execution status when the command began (running, terminated, failed, ...)."""
    routers: list[RouterSplit]
    signalled: bool
    signal_error: str | None
    terminated: bool
    termination_reason: str | None
    terminate_error: str | None
    moved_after_terminate: list[str]
    """Routers whose split had moved again after the terminate (an activity in flight) and was set back."""


async def force_abort(
    client: SluiceClient, description: WorkflowExecutionDescription, by: str, reason: str
) -> ForcedAbort:
    """Put 100% on stable for the rollout `description` names; see the module docstring."""
    record = RolloutRecord.of(description)
    service = record.service or record.workflow_id.removeprefix("rollout-")
    ended = await _ended_verified(client, description)
    if ended is not None:
        raise RolloutNotRunning(
            f"the rollout of {service} is not running: it ended on its own ({ended}) with its final "
            "split read back by the workflow, so there is nothing to force. Check it with "
            f"`sluice status {service}`; to move traffic, start a rollout.",
            record,
        )
    operator = OperatorInput(by=by, reason=reason)
    try:
        spec = await started_with(
            client.temporal, record.workflow_id, record.run_id, description.workflow_type or ""
        )
    except SpecUnreadable as err:
        raise BreakGlassRefused(
            f"cannot read the routers of {record.workflow_id} from its history: {err}. Nothing was touched.",
            record.workflow_id,
        ) from None
    except RPCError as err:
        raise client._rpc_error(err, f"read the history of {record.workflow_id}") from None

    routers = [(r, router_for(r.router)) for r in spec.routers]
    before = await _preflight(record.workflow_id, routers)

    signalled, signal_error = False, None
    if record.running:
        try:
            await client.temporal.get_workflow_handle(record.workflow_id, run_id=record.run_id).signal(
                SIGNAL_ABORT,
                OperatorInput(by=by, reason=f"{FORCED_ABORT}: {reason}"),
                rpc_timeout=timedelta(seconds=10),
            )
            signalled = True
        except RPCError as err:  # a wedged history may refuse new events: go on, it is not needed
            signal_error = err.message

    after = await _apply([router for _, router in routers])
    splits = [RouterSplit(r.label, before[i], after[i][0], after[i][1]) for i, (r, _) in enumerate(routers)]
    if not all(s.verified for s in splits):
        lines = "; ".join(s.words() for s in splits)
        raise TrafficNotVerified(
            f"100% stable could not be applied and read back on every router of {record.workflow_id}: "
            f"{lines}. {'The workflow was left running; f' if record.running else 'F'}ix the router and "
            f"run `sluice abort {service} --force` again.",
            record.workflow_id,
            splits,
        )

    terminated, termination_reason, terminate_error = False, None, None
    if record.running:
        weights = "; ".join(f"{s.label}: {_split(s.after)} ({s.after.detail})" for s in splits if s.after)
        termination_reason = cap(
            f"{FORCED_ABORT} by {by}: 100% stable applied by the CLI and verified: {weights}. "
            f"Reason: {reason}",
            2000,
        )
        try:
            await client.temporal.get_workflow_handle(record.workflow_id, run_id=record.run_id).terminate(
                reason=termination_reason, rpc_timeout=timedelta(seconds=10)
            )
            terminated = True
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                signal_words = (
                    "is recorded, so the workflow rolls back if it runs again"
                    if signalled
                    else "was not delivered either"
                )
                raise WorkflowNotEnded(
                    f"100% stable is applied and read back on every router of {record.workflow_id}, "
                    f"but Temporal did not terminate it: {err.message}. Its `abort` signal {signal_words}; "
                    f"terminate it with `temporal workflow terminate --workflow-id {record.workflow_id}` "
                    f"or run `sluice abort {service} --force` again.",
                    record.workflow_id,
                ) from None
            terminate_error = "it had already closed"  # e.g. its own rollback finished meanwhile

    moved: list[str] = []
    if record.running:
        # A set_traffic still running on a worker when the workflow ended can land after our change.
        again = await _apply_if_moved(routers)
        for i, (state, error, was_moved) in enumerate(again):
            if was_moved:
                moved.append(splits[i].label)
            splits[i] = RouterSplit(splits[i].label, splits[i].before, state, error)
        if not all(s.verified for s in splits):
            lines = "; ".join(s.words() for s in splits)
            raise TrafficNotVerified(
                f"after terminating {record.workflow_id} the split moved again and could not be set "
                f"back to 100% stable: {lines}. Run `sluice abort {service} --force` again.",
                record.workflow_id,
                splits,
            )

    return ForcedAbort(
        workflow_id=record.workflow_id,
        run_id=record.run_id,
        service=service,
        version=spec.version or record.version,
        operator=operator,
        temporal_status=record.temporal_status,
        routers=splits,
        signalled=signalled,
        signal_error=signal_error,
        terminated=terminated,
        termination_reason=termination_reason,
        terminate_error=terminate_error,
        moved_after_terminate=moved,
    )


async def _ended_verified(client: SluiceClient, description: WorkflowExecutionDescription) -> str | None:
    """How the run ended, if it ended on its own with a verified split (then `--force` refuses).

    Completed in a promoted, rolled-back or aborted phase (from its result, no worker needed),
    or cancelled (the compensation ran first). Running, terminated, failed, timed out, completed
    as `failed`, or a result this CLI cannot read: None, `--force` acts.
    """
    if description.status == WorkflowExecutionStatus.CANCELED:
        return "cancelled after its rollback"
    if description.status != WorkflowExecutionStatus.COMPLETED:
        return None
    handle = client.temporal.get_workflow_handle(
        description.id, run_id=description.run_id, result_type=RolloutStatus
    )
    try:
        final = await handle.result(follow_runs=False)
    except Exception:  # another codec key, or a result that is not a status: unverified
        return None
    return f"completed, phase {final.phase.value}" if final.phase in VERIFIED_PHASES else None


# --- router calls ---------------------------------------------------------------------------


async def _preflight(workflow_id: str, routers: list[tuple[RunRouter, TrafficRouter]]) -> list[TrafficState]:
    """Every router answers and has both targets; return each split. Refuse, touching nothing, if not."""

    async def one(router: TrafficRouter) -> TrafficState:
        try:
            await asyncio.wait_for(router.preflight(), ROUTER_CALL_TIMEOUT)
        except ApplicationError as err:
            # Preflight refuses splits a rollout cannot start from; a stuck rollout is mid-way.
            if err.type != errors.UNEXPECTED_SPLIT:
                raise
        return await asyncio.wait_for(router.read_weights(), ROUTER_CALL_TIMEOUT)

    results = await asyncio.gather(*(one(router) for _, router in routers), return_exceptions=True)
    failures = [
        f"{r.label}: {_error_words(result)}"
        for (r, _), result in zip(routers, results, strict=True)
        if isinstance(result, BaseException)
    ]
    if failures:
        raise RouterUnreachable(
            f"cannot force the abort of {workflow_id}: {'; '.join(failures)}. Nothing was touched "
            "(no signal, no weight changed, the workflow still runs). Run the command where the "
            "routers can be reached (where the workers run), with the same credentials.",
            workflow_id,
            failures,
        )
    return [r for r in results if isinstance(r, TrafficState)]


async def _apply(routers: list[TrafficRouter]) -> list[tuple[TrafficState | None, str | None]]:
    """`set_weights(0)` on every router (which reads back), a few tries each; (state, error) per router."""

    async def one(router: TrafficRouter) -> tuple[TrafficState | None, str | None]:
        error = "not tried"
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                return await asyncio.wait_for(router.set_weights(0), ROUTER_CALL_TIMEOUT), None
            except Exception as err:
                error = _error_words(err)
                if isinstance(err, ApplicationError) and err.non_retryable:
                    break
            if attempt < APPLY_ATTEMPTS:
                await asyncio.sleep(attempt)
        return None, error

    return list(await asyncio.gather(*(one(router) for router in routers)))


async def _apply_if_moved(
    routers: list[tuple[RunRouter, TrafficRouter]],
) -> list[tuple[TrafficState | None, str | None, bool]]:
    """Read every router; set 100% stable again where it moved. (state, error, moved) per router."""

    async def one(router: TrafficRouter) -> tuple[TrafficState | None, str | None, bool]:
        try:
            state = await asyncio.wait_for(router.read_weights(), ROUTER_CALL_TIMEOUT)
        except Exception as err:
            return None, _error_words(err), False
        if state.stable_weight == 100 and state.canary_weight == 0:
            return state, None, False
        [(again, error)] = await _apply([router])
        return again, error, True

    return list(await asyncio.gather(*(one(router) for _, router in routers)))


def _split(state: TrafficState) -> str:
    return f"stable {state.stable_weight} / canary {state.canary_weight}"


def _error_words(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return f"no answer within {ROUTER_CALL_TIMEOUT:g}s"
    if isinstance(err, ApplicationError):
        return f"{err.message} ({err.type})" if err.type else err.message
    return cap(f"{type(err).__name__}: {err}")


__all__ = [
    "BreakGlassRefused",
    "ForcedAbort",
    "RouterSplit",
    "RouterUnreachable",
    "TrafficNotVerified",
    "WorkflowNotEnded",
    "force_abort",
]
