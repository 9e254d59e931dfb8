"""Sluice as a Python API: start, follow, steer and read rollouts; typed results, typed errors.

    from sluice.runtime.client import SluiceClient, read_spec_file

    spec = read_spec_file("rollout.yaml")              # InvalidSpec lists every problem
    client = await SluiceClient.connect()              # TEMPORAL_ADDRESS, TEMPORAL_PROFILE, ... apply
    started = await client.start(spec, started_by="ci")  # started, attached, or already promoted
    final = await client.wait(spec.service, started.run_id)  # a RolloutStatus in a final phase

Every failure leaves this module as a `SluiceError` subclass whose `message` is one or two
sentences a person can act on, and whose attributes carry the facts behind it (the `sluice`
command maps each class to an exit code and prints the message). Nothing here prints.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from temporalio import exceptions as temporal_errors
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistoryEventFilterType,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.envconfig import ClientConfig
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from sluice.contracts import search_attributes as sa
from sluice.contracts.approvals import approval_statement
from sluice.contracts.calls import OperatorInput, RingRolloutInput, RolloutInput
from sluice.contracts.names import (
    QUERY_STATUS,
    RING_WORKFLOW_TYPE,
    SIGNAL_ABORT,
    SIGNAL_PAUSE,
    SIGNAL_PROMOTE,
    SIGNAL_RESUME,
    TASK_QUEUE,
    UPDATE_APPROVE,
    WORKFLOW_TYPE,
)
from sluice.contracts.plan import build_plan, static_details, static_summary
from sluice.contracts.spec import AnySpec, RingRolloutSpec, SpecError, SpecIssue, load_spec, workflow_id_for
from sluice.contracts.status import Phase, RolloutStatus, refusal_at_gate
from sluice.contracts.text import cap
from sluice.contracts.text import utc_time as _utc
from sluice.runtime import telemetry
from sluice.runtime.connect import DEFAULT_ADDRESS, connect_client
from sluice.runtime.history import SpecUnreadable, started_with
from sluice.runtime.signing import SigningFailed, sign_statement

if TYPE_CHECKING:
    from sluice.runtime.breakglass import ForcedAbort

DEFAULT_UI_URL = "http://127.0.0.1:8233"
CONNECT_TIMEOUT = 15.0
RECONNECT_FOR = 300.0
"""How long `follow`/`wait` keep retrying after losing Temporal (a server restart) before giving up."""
FORCED_ABORT = "sluice abort --force"
"""How the reason of a terminate by the break glass begins (see `sluice.runtime.breakglass`)."""
MEMO_TRAFFIC_TARGETS = "traffic_targets"
"""Memo key: the traffic target keys a rollout drives (`AnySpec.traffic_targets`), read from
list results (no worker, no history) when another rollout starts."""
NO_WORKER_HINT = f"is a worker running (`sluice worker`, task queue {TASK_QUEUE!r}) against this namespace?"

Verb = Literal["pause", "resume", "promote", "abort"]
VERBS: dict[str, str] = {
    "pause": SIGNAL_PAUSE,
    "resume": SIGNAL_RESUME,
    "promote": SIGNAL_PROMOTE,
    "abort": SIGNAL_ABORT,
}
"""Operator verbs and the signal each sends."""

_RolloutHandle = WorkflowHandle[Any, RolloutStatus]


# --- errors ---------------------------------------------------------------------------------


class SluiceError(Exception):
    """Base of every error this API raises; `message` is what to tell a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemporalUnavailable(SluiceError):
    """Temporal could not be reached, refused us (credentials, namespace), or failed a call."""

    def __init__(self, message: str, address: str) -> None:
        super().__init__(message)
        self.address = address


class InvalidSpec(SluiceError):
    """A spec file that cannot start a rollout: unreadable (`issues` empty) or invalid (each issue)."""

    def __init__(self, message: str, source: str, issues: list[SpecIssue]) -> None:
        super().__init__(message)
        self.source = source
        self.issues = issues


class RolloutNotFound(SluiceError):
    """The service has no rollout workflow in this namespace (never started, or deleted)."""

    def __init__(self, service: str, namespace: str) -> None:
        self.service = service
        self.workflow_id = workflow_id_for(service)
        self.namespace = namespace
        super().__init__(
            f"there is no rollout for service {service!r} "
            f"(no workflow {self.workflow_id} in namespace {namespace})."
        )


class RolloutNotRunning(SluiceError):
    """A verb that needs a running rollout (signal, approve) found the latest one closed."""

    def __init__(self, message: str, record: RolloutRecord) -> None:
        super().__init__(message)
        self.record = record


class NoWorker(SluiceError):
    """No worker answered the rollout's status query; `record` is what Temporal itself knows."""

    def __init__(self, record: RolloutRecord) -> None:
        self.record = record
        super().__init__(f"no worker answered the status query of {record.workflow_id}; {NO_WORKER_HINT}")


class AnotherRolloutRunning(SluiceError):
    """`start` found another version or spec running for the service; nothing was started.

    `running` is that rollout's record, `running_status` its status if a worker answered.
    """

    def __init__(
        self,
        message: str,
        running: RolloutRecord,
        running_status: RolloutStatus | None,
        running_digest: str | None,
    ) -> None:
        super().__init__(message)
        self.running = running
        self.running_status = running_status
        self.running_digest = running_digest


class TrafficTargetBusy(SluiceError):
    """`start` found a running rollout of another service driving the same traffic (a backend,
    listener rule, alias, stage or record); nothing was started. `running` is that rollout's
    record, `shared` the traffic target keys both would drive."""

    def __init__(self, message: str, running: RolloutRecord, shared: list[str]) -> None:
        super().__init__(message)
        self.running = running
        self.shared = shared


class PromotedWithAnotherSpec(SluiceError):
    """`start` of a version the service's latest rollout promoted, but with another spec digest.

    Nothing was started: running it would first send most users back to the old version.
    `start(..., force=True)` runs it anyway. `promoted` is that rollout's final status.
    """

    def __init__(self, message: str, promoted: RolloutStatus, spec_digest: str) -> None:
        super().__init__(message)
        self.promoted = promoted
        self.spec_digest = spec_digest


class ApprovalRefused(SluiceError):
    """The workflow's validator refused the approval (no gate waits, or not an approver); nothing recorded."""

    def __init__(self, workflow_id: str, reason: str) -> None:
        super().__init__(f"approval refused by {workflow_id}: {reason}")
        self.workflow_id = workflow_id
        self.reason = reason


class RefusedAtGate(SluiceError):
    """A verb that would go past the approval gate that waits (`resume`; `promote` by a
    non-approver): refused, by the CLI before sending or by the workflow (recorded as refused)."""

    def __init__(self, workflow_id: str, reason: str, sent: bool) -> None:
        where = "recorded as refused by" if sent else "not sent to"
        super().__init__(f"{where} {workflow_id}: {reason}")
        self.workflow_id = workflow_id
        self.reason = reason
        self.sent = sent


class RolloutEndedWithoutResult(SluiceError):
    """The rollout's workflow closed without a final status: cancelled, terminated, timed out or failed.

    `last_status` is the last status a worker reported (None if none ever did). Only
    `terminated` skips the rollback, so traffic then stays where `last_status` says;
    `force_aborted` is a terminate by `sluice abort --force`, which put 100% on stable and
    read it back first (the detail quotes its reason with the weights).
    """

    def __init__(
        self,
        workflow_id: str,
        how: Literal["cancelled", "terminated", "force_aborted", "timed_out", "failed"],
        detail: str,
        last_status: RolloutStatus | None,
    ) -> None:
        self.workflow_id = workflow_id
        self.how = how
        self.detail = detail
        self.last_status = last_status
        state = f" Last known phase {last_status.phase.value}: {last_status.message}" if last_status else ""
        super().__init__(f"{workflow_id} {detail}.{state}".rstrip())


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutRecord:
    """What Temporal itself records about one rollout run (search attributes, times): no worker needed."""

    workflow_id: str
    run_id: str
    service: str | None
    version: str | None
    phase: str | None
    """`SluicePhase` as last published; may lag the workflow's own status by a moment."""
    weight: int | None
    """`SluiceWeight`: percent on the new version as last published."""
    temporal_status: str
    """Temporal's execution status in lower case: running, completed, terminated, ..."""
    started_at: datetime
    closed_at: datetime | None

    @property
    def running(self) -> bool:
        return self.temporal_status == "running"

    @property
    def status_words(self) -> str:
        """`continued as new`, `running`: the execution status as a sentence says it."""
        return self.temporal_status.replace("_", " ")

    @classmethod
    def of(cls, execution: WorkflowExecution) -> RolloutRecord:
        attrs = execution.typed_search_attributes
        status = execution.status.name.lower() if execution.status else "unknown"
        return cls(
            workflow_id=execution.id,
            run_id=execution.run_id,
            service=attrs.get(sa.SERVICE),
            version=attrs.get(sa.VERSION),
            phase=attrs.get(sa.PHASE),
            weight=attrs.get(sa.WEIGHT),
            temporal_status=status,
            started_at=execution.start_time,
            closed_at=execution.close_time,
        )


class StartOutcome(StrEnum):
    """What `start` did."""

    STARTED = "started"
    """A new run began at step 1 (first rollout of this version, or a retry after a rollback or abort)."""
    ATTACHED = "attached"
    """The same version and spec was already running (a CI re-run): nothing new was started."""
    ALREADY_PROMOTED = "already_promoted"
    """The service's latest rollout promoted this version with this spec: traffic was not touched."""


@dataclass(frozen=True)
class StartResult:
    """The rollout `start` left behind; `status` is the final status when `ALREADY_PROMOTED`."""

    outcome: StartOutcome
    workflow_id: str
    run_id: str | None
    spec_digest: str
    started_at: datetime | None = None
    """When the attached or promoted run started (None for a run started just now)."""
    status: RolloutStatus | None = None


@dataclass(frozen=True)
class SignalResult:
    """A verb sent to a running rollout, and what the workflow did with it within a few seconds.

    `handled` is True once the workflow recorded the action or changed phase; `after` is its
    latest status (None if no worker answered: the signal then waits for one).
    """

    workflow_id: str
    verb: str
    operator: OperatorInput
    handled: bool
    after: RolloutStatus | None


@dataclass(frozen=True)
class ApprovalResult:
    """The gate that was approved (the rollout's own, or its running ring's) and the status after."""

    workflow_id: str
    operator: OperatorInput
    status: RolloutStatus


@dataclass(frozen=True)
class StatusPolled:
    """`follow`: the status at one poll; None when no worker answered it."""

    status: RolloutStatus | None


@dataclass(frozen=True)
class ConnectionLost:
    """`follow`: Temporal stopped answering; `follow` retries for `retry_for` seconds."""

    reason: str
    retry_for: float


@dataclass(frozen=True)
class Reconnected:
    """`follow`: Temporal answers again after `after` seconds."""

    after: float


@dataclass(frozen=True)
class Ended:
    """`follow`: the rollout's final status (promoted, rolled back, aborted or failed)."""

    status: RolloutStatus


FollowEvent = StatusPolled | ConnectionLost | Reconnected | Ended


# --- spec files -----------------------------------------------------------------------------


def read_spec_file(path: str | Path, overrides: Sequence[str] = ()) -> AnySpec:
    """Load and validate a spec file (`-` reads stdin), with `KEY=VALUE` overrides of simple fields
    (`--set`, see `sluice.contracts.spec.load_spec`); raise `InvalidSpec` listing every issue."""
    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise InvalidSpec(f"cannot read {source}: {reason}.", source, []) from None
    try:
        return load_spec(text, source=source, overrides=overrides)
    except SpecError as err:
        raise InvalidSpec(str(err), err.source, err.issues) from None


# --- the client -----------------------------------------------------------------------------


class SluiceClient:
    """A connection to Temporal that starts, follows, steers and reads Sluice rollouts.

    One rollout per service at a time: the workflow id is `rollout-<service>`, and every
    verb addresses the service's latest run. Safe to share between tasks of one event loop.
    """

    def __init__(self, temporal: Client, address: str) -> None:
        self.temporal = temporal
        """The underlying Temporal client (for anything this API does not cover)."""
        self.address = address
        """Where the client was told to connect, for messages."""

    @classmethod
    async def connect(
        cls,
        profile: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        runtime: Runtime | None = None,
    ) -> SluiceClient:
        """Connect with Temporal's own settings (envconfig), Sluice's data converter and tracing.

        `runtime` is the SDK's (its threads and log settings; default: the SDK's default).
        Raises `TemporalUnavailable` naming the address and the gist of the failure.
        """
        try:
            config = ClientConfig.load_client_connect_config(profile=profile)
        except Exception as err:
            raise TemporalUnavailable(
                f"could not read the Temporal connection settings: {err}", DEFAULT_ADDRESS
            ) from None
        address = str(config.get("target_host") or DEFAULT_ADDRESS)
        try:
            temporal = await asyncio.wait_for(connect_client(profile, runtime), connect_timeout)
        except TimeoutError as err:
            raise _unreachable(address, f"no answer within {connect_timeout:g}s") from err
        except RPCError as err:
            raise _unreachable(address, err.message) from None
        except (RuntimeError, OSError, ValueError) as err:
            raise _unreachable(address, _connect_reason(err)) from None
        return cls(temporal, address)

    @property
    def namespace(self) -> str:
        return self.temporal.namespace

    def ui_link(self, service: str) -> str:
        """The rollout in the Temporal Web UI (`SLUICE_UI_URL`, default the dev server's UI)."""
        base = (os.environ.get("SLUICE_UI_URL") or DEFAULT_UI_URL).rstrip("/")
        return f"{base}/namespaces/{self.namespace}/workflows/{workflow_id_for(service)}"

    # --- reading ----------------------------------------------------------------------------

    async def record(self, service: str) -> RolloutRecord:
        """The service's latest rollout run as Temporal records it; `RolloutNotFound` if none."""
        return RolloutRecord.of(await self._describe_latest_run(service))

    async def status(self, service: str) -> RolloutStatus:
        """The latest run's status: its result once completed (no worker needed), else the query.

        Raises `RolloutNotFound`, `NoWorker` (with the record) or `TemporalUnavailable`.
        """
        return await self.status_of(await self.record(service))

    async def status_of(self, record: RolloutRecord) -> RolloutStatus:
        """The status of the run `record` names (see `status`)."""
        handle = self._handle(record.workflow_id, record.run_id)
        if record.temporal_status == "completed":
            try:
                return await handle.result(follow_runs=False)
            except (WorkflowFailureError, RPCError):
                pass
        status = await _query_status(handle, wait_seconds=5.0 if record.running else 3.0)
        if status is None:
            raise NoWorker(record)
        return status

    async def termination_reason(self, record: RolloutRecord) -> str | None:
        """Why the run `record` names was terminated (its close event's reason); None if it was not."""
        if record.temporal_status != "terminated":
            return None
        handle = self._handle(record.workflow_id, record.run_id)
        try:
            async for event in handle.fetch_history_events(
                event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
            ):
                if event.HasField("workflow_execution_terminated_event_attributes"):
                    return event.workflow_execution_terminated_event_attributes.reason
        except RPCError as err:
            raise self._rpc_error(err, f"read how {record.workflow_id} ended") from None
        return None

    async def list_rollouts(self, service: str | None = None, limit: int = 50) -> list[RolloutRecord]:
        """Rollout runs newest first, from the search attributes (no worker needed).

        A ring rollout's rings are not listed on their own: their ring rollout is.
        """
        query = f"WorkflowType IN ('{WORKFLOW_TYPE}', '{RING_WORKFLOW_TYPE}')"
        if service:
            query += f" AND {sa.SERVICE.name}='{service}'"
        records: list[RolloutRecord] = []
        try:
            async for execution in self.temporal.list_workflows(query=query, limit=limit):
                record = RolloutRecord.of(execution)
                if record.service is not None:
                    records.append(record)
        except RPCError as err:
            raise self._rpc_error(err, "list workflows") from None
        return records

    # --- start and follow -------------------------------------------------------------------

    async def start(self, spec: AnySpec, started_by: str = "", *, force: bool = False) -> StartResult:
        """Start the rollout `spec` describes, unless this exact rollout already ran or runs.

        - The same version and spec running: attach to it (`ATTACHED`, a CI re-run).
        - The service's latest rollout PROMOTED this version with this spec digest:
          do nothing (`ALREADY_PROMOTED`, with its final status); traffic is not touched.
        - It promoted this version with another digest: `PromotedWithAnotherSpec`, nothing
          started (a new run would begin by sending most users back to the old version).
        - Otherwise (first rollout, a new version, a retry after a rollback, an abort or a
          failure) a new run starts at step 1 (`STARTED`).

        `force=True` starts a new run at step 1 even after such a promotion (a running rollout
        is still attached to or refused). Raises `AnotherRolloutRunning` when another version
        or spec runs (nothing started), `TrafficTargetBusy` when a running rollout of another
        service drives the same traffic (nothing started; `force` does not override it),
        `TemporalUnavailable` otherwise. A running rollout is
        never started over: one that ends while `start` looks is looked at again, and one
        started by someone else between the look and the start is attached to or refused.
        """
        digest = spec.digest()
        for _ in range(2):  # a second try only if the running one ended while we looked at it
            try:
                latest: WorkflowExecutionDescription | None = await self._describe_latest_run(spec.service)
            except RolloutNotFound:
                latest = None
            if latest is not None and latest.status == WorkflowExecutionStatus.RUNNING:
                # Attach or refuse without trying to start: were it promoted a moment later,
                # a start would run it again from step 1.
                attached = await self._attach(spec, digest)
                if attached is not None:
                    return attached
                continue  # it just ended: look again
            if latest is not None and not force:
                promoted = await self._promoted(latest, spec, digest)
                if promoted is not None:
                    return promoted
            await self._refuse_shared_traffic(spec)
            try:
                handle = await self._start_workflow(spec, digest, started_by)
                return StartResult(StartOutcome.STARTED, handle.id, handle.result_run_id, digest)
            except WorkflowAlreadyStartedError:
                attached = await self._attach(spec, digest)
                if attached is not None:
                    return attached
            except RPCError as err:
                if err.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in err.message:
                    names = ", ".join(f"{k}={v}" for k, v in sa.REGISTRATION.items())
                    raise TemporalUnavailable(
                        f"Temporal at {self.address} rejected the rollout's search attributes: "
                        f"{err.message}. Register them ({names}) with `temporal operator "
                        "search-attribute create`, or use `sluice dev`.",
                        self.address,
                    ) from None
                raise self._rpc_error(err, f"start {spec.workflow_id}") from None
        raise TemporalUnavailable(
            f"{spec.workflow_id} keeps starting and ending under us; try again.", self.address
        )

    async def follow(
        self,
        service: str,
        run_id: str | None = None,
        *,
        poll_interval: float = 1.0,
        reconnect_for: float = RECONNECT_FOR,
    ) -> AsyncIterator[FollowEvent]:
        """Follow a rollout to its end: a `StatusPolled` per poll, then one `Ended`.

        `run_id` (e.g. from `StartResult`) pins the run whose outcome counts; continue-as-new
        is followed. When Temporal stops answering (a server restart), yields `ConnectionLost`
        and keeps retrying for `reconnect_for` seconds, then `Reconnected` once it answers; past
        that, raises `TemporalUnavailable`. A workflow that closes without a result raises
        `RolloutEndedWithoutResult`. Stopping the iteration leaves the rollout running.
        """
        outcome_handle = self._handle(workflow_id_for(service), run_id)
        latest = self._handle(workflow_id_for(service))  # queries go to the latest run
        loop = asyncio.get_running_loop()
        result: asyncio.Future[RolloutStatus] | None = None
        lost_since: float | None = None
        last: RolloutStatus | None = None
        try:
            while True:
                if result is None:
                    result = asyncio.ensure_future(outcome_handle.result())
                if result.done():
                    error = result.exception()
                    if error is None:
                        if lost_since is not None:
                            yield Reconnected(loop.time() - lost_since)
                        yield Ended(result.result())
                        return
                    if isinstance(error, WorkflowFailureError):
                        final = await _query_status(latest, wait_seconds=5.0) or last
                        raise _ended_without_result(outcome_handle.id, error, final) from None
                    if not (isinstance(error, RPCError) and _connection_lost(error)):
                        if isinstance(error, RPCError):
                            raise self._rpc_error(error, f"wait for {outcome_handle.id}") from None
                        raise error
                    result = None
                    if lost_since is None:
                        lost_since = loop.time()
                        yield ConnectionLost(error.message, reconnect_for)
                    elif loop.time() - lost_since > reconnect_for:
                        raise TemporalUnavailable(
                            f"lost Temporal at {self.address} while following {outcome_handle.id} and "
                            f"it did not answer again within {reconnect_for:g}s ({error.message}); the "
                            f"rollout goes on: check it with `sluice status {service}`.",
                            self.address,
                        ) from None
                    await asyncio.sleep(min(2.0, poll_interval * 2))
                    continue
                status = await _query_status(latest, wait_seconds=2.0)
                if status is not None:
                    last = status
                    if lost_since is not None:
                        yield Reconnected(loop.time() - lost_since)
                        lost_since = None
                if lost_since is None:
                    yield StatusPolled(status)
                await asyncio.wait({result}, timeout=poll_interval)
        finally:
            if result is not None and not result.done():
                result.cancel()

    async def wait(
        self, service: str, run_id: str | None = None, *, reconnect_for: float = RECONNECT_FOR
    ) -> RolloutStatus:
        """The rollout's final status once it ends (see `follow` for what it raises)."""
        async for event in self.follow(service, run_id, reconnect_for=reconnect_for):
            if isinstance(event, Ended):
                return event.status
        raise AssertionError("follow ended without a final status")  # follow always yields Ended

    # --- steering ---------------------------------------------------------------------------

    async def signal(
        self, service: str, verb: Verb, by: str, reason: str, *, settle: float = 3.0
    ) -> SignalResult:
        """Send an operator verb (pause, resume, promote, abort) to the service's running rollout.

        Waits up to `settle` seconds for the workflow to record it. Raises `RolloutNotFound`,
        `RolloutNotRunning` (nothing sent) or `TemporalUnavailable`.
        """
        signal_name = VERBS[verb]
        operator = OperatorInput(reason=reason, by=by)
        description = await self._describe_latest_run(service)
        record = RolloutRecord.of(description)
        if not record.running:
            phase = f", phase {record.phase}" if record.phase else ""
            raise RolloutNotRunning(
                f"the rollout of {service} is not running (it is {record.status_words} since "
                f"{_utc(record.closed_at)}{phase}); there is nothing to {signal_name}.",
                record,
            )
        handle = self._handle(record.workflow_id, record.run_id)
        before = await _query_status(handle, wait_seconds=2.0)
        if before is not None and before.approval is not None:
            # The workflow would refuse it too (and record that); say so without sending anything.
            why = refusal_at_gate(
                before.approval, service, verb, by, promote_passes=before.strategy != "rings"
            )
            if why is not None:
                raise RefusedAtGate(record.workflow_id, why, sent=False)
        carrier = await _memo_carrier(description)
        try:
            attributes = {"sluice.service": service, "sluice.by": operator.by}
            with telemetry.cli_span(f"sluice {signal_name}", attributes, carrier):
                await handle.signal(signal_name, operator)
        except RPCError as err:
            raise self._rpc_error(err, f"signal {record.workflow_id}") from None
        after, handled = before, False
        if before is not None:
            # The workflow has handled the signal once its action log grows or its phase changes.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + settle
            while not handled and loop.time() < deadline:
                await asyncio.sleep(0.3)
                now = await _query_status(handle, wait_seconds=1.0)
                if now is not None:
                    after = now
                    handled = len(now.actions) > len(before.actions) or now.phase != before.phase
            refused = [
                a
                for a in (after.actions[len(before.actions) :] if after is not None else [])
                if a.action == f"{verb}_refused" and a.by == by
            ]
            if refused:  # a gate began waiting as it was sent
                raise RefusedAtGate(record.workflow_id, refused[-1].reason, sent=True)
        return SignalResult(record.workflow_id, signal_name, operator, handled, after)

    async def approve(
        self,
        service: str,
        by: str,
        reason: str,
        *,
        sign_with: str | None = None,
        valid_for: timedelta = timedelta(minutes=10),
    ) -> ApprovalResult:
        """Pass the approval gate that waits: the rollout's own, or its running ring's.

        With `sign_with` (an SSH private key's path) the approval is signed: a statement naming
        the rollout, its run, the gate and an expiry `valid_for` from now, signed by that key on
        this machine; the worker verifies it against its allowed signers. Raises
        `ApprovalRefused` when no gate waits, `by` is not among its approvers (nothing recorded),
        or the signature does not verify (recorded as refused); `RolloutNotRunning`,
        `RolloutNotFound` or `TemporalUnavailable`.
        """
        operator = OperatorInput(reason=reason, by=by)
        record = await self.record(service)
        if not record.running:
            raise RolloutNotRunning(
                f"the rollout of {service} is not running; there is nothing to approve.", record
            )
        target = self._handle(record.workflow_id, record.run_id)
        status = await _query_status(target, wait_seconds=3.0)
        if status is not None and status.approval is None:
            # A ring rollout whose running ring waits at an approval step: approve that ring.
            running = [r for r in status.rings if r.phase != "pending" and not Phase(r.phase).is_final]
            if running:
                target = self._handle(running[0].workflow_id)
        if sign_with is not None:
            operator = await self._signed(target, operator, sign_with, valid_for)
        try:
            after: RolloutStatus = await target.execute_update(
                UPDATE_APPROVE,
                operator,
                result_type=RolloutStatus,
                # A signed approval waits for the worker's `ssh-keygen -Y verify` activity too.
                rpc_timeout=timedelta(seconds=30 if operator.signature else 10),
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = getattr(cause, "message", None) or str(cause or err)
            raise ApprovalRefused(target.id, message) from None
        except RPCError as err:
            raise self._rpc_error(err, f"approve {target.id}") from None
        return ApprovalResult(target.id, operator, after)

    async def _signed(
        self, target: _RolloutHandle, operator: OperatorInput, key: str, valid_for: timedelta
    ) -> OperatorInput:
        """`operator` with a statement for the gate `target` waits at, signed with `key`."""
        try:
            description = await target.describe()
        except RPCError as err:
            raise self._rpc_error(err, f"describe {target.id}") from None
        status = await _query_status(self._handle(target.id, description.run_id), wait_seconds=3.0)
        if status is None or status.approval is None:
            raise ApprovalRefused(
                target.id, "no approval gate waits (or no worker answered), nothing to sign"
            )
        statement = approval_statement(
            target.id,
            description.run_id,
            status.approval.step,
            status.approval.since,
            operator.by,
            datetime.now(UTC) + valid_for,
        )
        try:
            signature = await asyncio.to_thread(sign_statement, key, statement)
        except SigningFailed as err:
            raise ApprovalRefused(target.id, f"not sent: {err}") from None
        return operator.model_copy(update={"statement": statement, "signature": signature})

    async def force_abort(self, service: str, by: str, reason: str) -> ForcedAbort:
        """Break glass: put 100% on stable from here, for a rollout whose workflow cannot act.

        Reads the routers from the run's history, applies and verifies the rollback with the
        routers' own code, records it on the workflow (`abort` signal) and terminates it, so
        the workflow's own compensation is skipped: the last resort (see
        `sluice.runtime.breakglass`). Raises `RouterUnreachable` or `BreakGlassRefused` with
        nothing touched, `TrafficNotVerified`, `RolloutNotRunning` for a rollout that ended on
        its own, `RolloutNotFound` or `TemporalUnavailable`.
        """
        from sluice.runtime import breakglass  # imports the routers (boto3): only when needed

        return await breakglass.force_abort(self, await self._describe_latest_run(service), by, reason)

    # --- internals --------------------------------------------------------------------------

    def _handle(self, workflow_id: str, run_id: str | None = None) -> _RolloutHandle:
        return self.temporal.get_workflow_handle(workflow_id, run_id=run_id, result_type=RolloutStatus)

    async def _describe_latest_run(self, service: str) -> WorkflowExecutionDescription:
        try:
            return await self._handle(workflow_id_for(service)).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and "namespace" not in err.message.lower():
                raise RolloutNotFound(service, self.namespace) from None
            raise self._rpc_error(err, f"describe {workflow_id_for(service)}") from None

    def _rpc_error(self, err: RPCError, doing: str) -> TemporalUnavailable:
        """A gRPC failure as a sentence: unreachable, refused, no such namespace, or what failed."""
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return _unreachable(self.address, err.message)
        if err.status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
            message = (
                f"Temporal at {self.address} refused to {doing}: {err.message}. "
                "Check TEMPORAL_API_KEY, the TLS settings or TEMPORAL_PROFILE."
            )
        elif err.status == RPCStatusCode.NOT_FOUND and "namespace" in err.message.lower():
            message = (
                f"Temporal at {self.address} has no namespace {self.namespace!r}: {err.message}. "
                "Set TEMPORAL_NAMESPACE."
            )
        else:
            message = f"Temporal at {self.address} could not {doing}: {err.message}"
        return TemporalUnavailable(message, self.address)

    async def _start_workflow(self, spec: AnySpec, digest: str, started_by: str) -> _RolloutHandle:
        workflow_input: RolloutInput | RingRolloutInput
        if isinstance(spec, RingRolloutSpec):
            workflow_type = RING_WORKFLOW_TYPE
            workflow_input = RingRolloutInput(spec=spec, spec_digest=digest, started_by=started_by)
        else:
            workflow_type = WORKFLOW_TYPE
            workflow_input = RolloutInput(spec=spec, spec_digest=digest, started_by=started_by)
        return await self.temporal.start_workflow(
            workflow_type,
            workflow_input,
            id=spec.workflow_id,
            task_queue=TASK_QUEUE,
            result_type=RolloutStatus,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            # A closed rollout may run again (a retry after a rollback or abort); `start` has
            # already refused to re-run a promotion of this version.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.SERVICE, spec.service),
                    SearchAttributePair(sa.VERSION, spec.version),
                    SearchAttributePair(sa.PHASE, Phase.PROGRESSING.value),
                    SearchAttributePair(sa.WEIGHT, 0),
                ]
            ),
            # The trace context lets later commands (`sluice pause`, ...) join the rollout's trace.
            memo={
                "spec_digest": digest,
                "started_by": started_by,
                MEMO_TRAFFIC_TARGETS: list(spec.traffic_targets()),
                telemetry.MEMO_TRACE: telemetry.current_carrier(),
            },
            static_summary=static_summary(spec),
            static_details=static_details(build_plan(spec), started_by),
        )

    async def _refuse_shared_traffic(self, spec: AnySpec) -> None:
        """Raise `TrafficTargetBusy` if a running rollout of another service drives a traffic
        target of `spec`: two rollouts moving the same traffic would undo each other's steps and
        rollbacks. A server without listing (the time-skipping test server) skips the check."""
        mine = set(spec.traffic_targets())
        query = f"WorkflowType IN ('{WORKFLOW_TYPE}', '{RING_WORKFLOW_TYPE}') AND ExecutionStatus = 'Running'"
        try:
            async for execution in self.temporal.list_workflows(query=query):
                # A ring's child rollout is covered by its ring rollout; the service's own is not "another".
                if execution.parent_id is not None or execution.id == spec.workflow_id:
                    continue
                shared = sorted(mine & set(await self._traffic_targets_of(execution)))
                if shared:
                    raise _traffic_target_busy(spec, RolloutRecord.of(execution), shared)
        except RPCError as err:
            if err.status == RPCStatusCode.UNIMPLEMENTED:
                return
            raise self._rpc_error(err, "list the running rollouts") from None

    async def _traffic_targets_of(self, execution: WorkflowExecution) -> list[str]:
        """A running rollout's traffic targets: from its memo, else (started before the memo had
        them) from the input in its history; none if neither can be read (another codec key)."""
        try:
            keys = await execution.memo_value(MEMO_TRAFFIC_TARGETS, None)
        except Exception:  # a memo this process cannot decode
            keys = None
        if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
            return keys
        try:
            started = await started_with(
                self.temporal, execution.id, execution.run_id, execution.workflow_type
            )
        except SpecUnreadable:
            return []
        return list(started.traffic_targets())

    async def _promoted(
        self, description: WorkflowExecutionDescription, spec: AnySpec, digest: str
    ) -> StartResult | None:
        """`ALREADY_PROMOTED` if this closed latest run promoted this version with this digest;
        None to start anew. Raises `PromotedWithAnotherSpec` for another digest."""
        if description.status != WorkflowExecutionStatus.COMPLETED:
            return None  # cancelled, terminated, failed, timed out: a retry
        try:
            final = await self._handle(description.id, description.run_id).result(follow_runs=False)
        except WorkflowFailureError:
            return None
        except RPCError as err:
            raise self._rpc_error(err, f"read the outcome of {description.id}") from None
        if final.phase != Phase.PROMOTED or final.version != spec.version:
            return None
        if final.spec_digest != digest:
            raise PromotedWithAnotherSpec(
                f"{spec.service} {spec.version} was already promoted by {description.id} "
                f"(finished {_utc(final.finished_at)}) with spec digest {final.spec_digest}; "
                f"this spec's digest is {digest}. Starting it would begin at step 1 and send "
                "most users back to the old version. Nothing was started; run it anyway with "
                "`sluice start --force`, or give the spec the version it rolls out.",
                final,
                digest,
            )
        return StartResult(
            StartOutcome.ALREADY_PROMOTED,
            description.id,
            description.run_id,
            digest,
            started_at=description.start_time,
            status=final,
        )

    async def _attach(self, spec: AnySpec, digest: str) -> StartResult | None:
        """`ATTACHED` if the running rollout is this very spec; None if it just ended.

        Else raises `AnotherRolloutRunning`.
        """
        description = await self._describe_latest_run(spec.service)
        record = RolloutRecord.of(description)
        if not record.running:
            return None
        handle = self._handle(record.workflow_id, record.run_id)
        running_digest = await description.memo_value("spec_digest", None)
        running_version = record.version
        status: RolloutStatus | None = None
        if running_digest is None:  # started by other means than `sluice start`: ask the workflow
            status = await _query_status(handle, wait_seconds=5.0)
            if status is not None:
                running_digest, running_version = status.spec_digest, status.version
        if running_digest == digest and running_version == spec.version:
            return StartResult(
                StartOutcome.ATTACHED, record.workflow_id, record.run_id, digest, started_at=record.started_at
            )
        status = status or await _query_status(handle, wait_seconds=3.0)
        if status is not None:
            where = (
                f"{status.version} at step {status.step_index + 1}/{status.step_count} "
                f"({status.step}), phase {status.phase.value}"
            )
        else:
            shown = "?" if record.weight is None else str(record.weight)
            where = f"{running_version or '?'}, phase {record.phase or 'unknown'}, weight {shown}%"
        same = " (same version, different spec)" if running_version == spec.version else ""
        raise AnotherRolloutRunning(
            f"another rollout is running for {spec.service}: {where}{same}, started "
            f"{_utc(record.started_at)}; yours is {spec.version} (spec digest {digest}). Wait for "
            f"it to end or stop it with `sluice abort {spec.service} --reason ...`.",
            record,
            status,
            running_digest,
        )


# --- helpers --------------------------------------------------------------------------------


async def _query_status(handle: _RolloutHandle, wait_seconds: float) -> RolloutStatus | None:
    """Ask the workflow (through a worker) for its status; None if nobody answered in time."""
    try:
        with telemetry.untraced():
            status: RolloutStatus = await handle.query(
                QUERY_STATUS, result_type=RolloutStatus, rpc_timeout=timedelta(seconds=wait_seconds)
            )
    except (RPCError, WorkflowQueryFailedError, TimeoutError):
        return None
    return status


def _connection_lost(err: RPCError) -> bool:
    """The server went away (restart, network): worth retrying, unlike a refusal or a bad request."""
    return err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNKNOWN)


def _traffic_target_busy(spec: AnySpec, running: RolloutRecord, shared: list[str]) -> TrafficTargetBusy:
    service = running.service or running.workflow_id
    return TrafficTargetBusy(
        f"the running rollout {running.workflow_id} (service {service} {running.version or '?'}, "
        f"started {_utc(running.started_at)}) drives the same traffic as this spec for "
        f"{spec.service}: {', '.join(shared)}. One rollout per traffic target: wait for it to end "
        f"or stop it with `sluice abort {service} --reason ...`. Nothing was started.",
        running,
        shared,
    )


def _ended_without_result(
    workflow_id: str, err: WorkflowFailureError, last: RolloutStatus | None
) -> RolloutEndedWithoutResult:
    cause = err.cause
    if isinstance(cause, temporal_errors.CancelledError):
        return RolloutEndedWithoutResult(workflow_id, "cancelled", "was cancelled through Temporal", last)
    if isinstance(cause, temporal_errors.TerminatedError):
        if cause.message.startswith(FORCED_ABORT):
            return RolloutEndedWithoutResult(
                workflow_id, "force_aborted", f"was ended by {cause.message}", last
            )
        detail = "was terminated: no rollback ran, so check the router's weights"
        return RolloutEndedWithoutResult(workflow_id, "terminated", detail, last)
    if isinstance(cause, temporal_errors.TimeoutError):
        return RolloutEndedWithoutResult(workflow_id, "timed_out", "timed out", last)
    return RolloutEndedWithoutResult(workflow_id, "failed", f"failed: {cause or err}", last)


def _unreachable(address: str, reason: str) -> TemporalUnavailable:
    return TemporalUnavailable(
        f"could not reach Temporal at {address}: {reason}; "
        "start one with `sluice dev` or set TEMPORAL_ADDRESS.",
        address,
    )


def _connect_reason(err: BaseException) -> str:
    """The gist of the SDK's connect error (a Rust debug dump) in a few words."""
    text = str(err)
    for needle, gist in (
        ("ConnectionRefused", "connection refused"),
        ("Connection refused", "connection refused"),
        ("dns error", "the host name does not resolve"),
        ("timed out", "timed out"),
        ("InvalidCertificate", "invalid TLS certificate"),
        ("UnknownIssuer", "TLS certificate from an unknown issuer"),
    ):
        if needle in text:
            return gist
    text = re.sub(r"^Failed client connect:\s*", "", text)
    return cap(text, 200)


async def _memo_carrier(description: WorkflowExecutionDescription) -> dict[str, str] | None:
    """The rollout's trace context from its memo (absent for rollouts started otherwise)."""
    try:
        value = await description.memo_value(telemetry.MEMO_TRACE, None)
    except Exception:  # a memo this process cannot decode (another codec key): no parent
        return None
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    return None


__all__ = [
    "AnotherRolloutRunning",
    "ApprovalRefused",
    "ApprovalResult",
    "ConnectionLost",
    "Ended",
    "FollowEvent",
    "InvalidSpec",
    "NoWorker",
    "PromotedWithAnotherSpec",
    "Reconnected",
    "RolloutEndedWithoutResult",
    "RolloutNotFound",
    "RolloutNotRunning",
    "RolloutRecord",
    "SignalResult",
    "SluiceClient",
    "SluiceError",
    "StartOutcome",
    "StartResult",
    "StatusPolled",
    "TemporalUnavailable",
    "TrafficTargetBusy",
    "read_spec_file",
]
