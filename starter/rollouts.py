"""What the CLI asks of Temporal: start or attach, follow, query, list and signal rollouts.

Every Temporal failure leaves this module as a `CliError` with an exit code and a message
a person can act on; the CLI prints it without a traceback.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import exceptions as temporal_errors
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
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
from temporalio.service import RPCError, RPCStatusCode

from sluice.cli.ci import LiveView, watching_line
from sluice.cli.console import Console
from sluice.cli.exits import CliError, ExitCode, exit_code_for
from sluice.cli.plan import build_plan, static_details, static_summary
from sluice.cli.render import Progress, render_status, step_label, when
from sluice.contracts import search_attributes as sa
from sluice.contracts.calls import OperatorInput, RingRolloutInput, RolloutInput
from sluice.contracts.names import QUERY_STATUS, RING_WORKFLOW_TYPE, TASK_QUEUE, UPDATE_APPROVE, WORKFLOW_TYPE
from sluice.contracts.spec import AnySpec, RingRolloutSpec, workflow_id_for
from sluice.contracts.status import Phase, RolloutStatus
from sluice.contracts.text import cap
from sluice.runtime import telemetry
from sluice.runtime.connect import DEFAULT_ADDRESS, connect_client

DEFAULT_UI_URL = "http://127.0.0.1:8233"
CONNECT_TIMEOUT = 15.0
POLL_INTERVAL = 1.0
NO_WORKER_HINT = f"is a worker running (`sluice worker`, task queue {TASK_QUEUE!r}) against this namespace?"

RolloutHandle = WorkflowHandle[Any, RolloutStatus]


@dataclass(frozen=True)
class Temporal:
    """A connected client and the address it was told to use (for messages)."""

    client: Client
    address: str

    @property
    def namespace(self) -> str:
        return self.client.namespace

    def handle(self, service: str, run_id: str | None = None) -> RolloutHandle:
        return self.client.get_workflow_handle(
            workflow_id_for(service), run_id=run_id, result_type=RolloutStatus
        )

    def ui_link(self, service: str) -> str:
        """The rollout in the Temporal Web UI (`SLUICE_UI_URL`, default the dev server's UI)."""
        base = (os.environ.get("SLUICE_UI_URL") or DEFAULT_UI_URL).rstrip("/")
        return f"{base}/namespaces/{self.namespace}/workflows/{workflow_id_for(service)}"

    def rpc_error(self, err: RPCError, doing: str) -> CliError:
        """Turn a gRPC failure into an exit code and a sentence."""
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return unreachable(self.address, err.message)
        if err.status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
            return CliError(
                f"Temporal at {self.address} refused to {doing}: {err.message}. "
                "Check TEMPORAL_API_KEY, the TLS settings or TEMPORAL_PROFILE.",
                ExitCode.UNAVAILABLE,
            )
        if err.status == RPCStatusCode.NOT_FOUND and "namespace" in err.message.lower():
            return CliError(
                f"Temporal at {self.address} has no namespace {self.namespace!r}: {err.message}. "
                "Set TEMPORAL_NAMESPACE.",
                ExitCode.UNAVAILABLE,
            )
        return CliError(f"Temporal at {self.address} could not {doing}: {err.message}", ExitCode.UNAVAILABLE)


def unreachable(address: str, reason: str) -> CliError:
    return CliError(
        f"could not reach Temporal at {address}: {reason}; "
        "start one with `sluice dev` or set TEMPORAL_ADDRESS.",
        ExitCode.UNAVAILABLE,
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


async def open_temporal() -> Temporal:
    """Connect with Temporal's own settings (envconfig); a failure is exit 5 with a hint."""
    try:
        config = ClientConfig.load_client_connect_config()
    except Exception as err:
        raise CliError(
            f"could not read the Temporal connection settings: {err}", ExitCode.UNAVAILABLE
        ) from None
    address = str(config.get("target_host") or DEFAULT_ADDRESS)
    try:
        client = await asyncio.wait_for(connect_client(), CONNECT_TIMEOUT)
    except TimeoutError as err:
        raise unreachable(address, f"no answer within {CONNECT_TIMEOUT:g}s") from err
    except RPCError as err:
        raise unreachable(address, err.message) from None
    except (RuntimeError, OSError, ValueError) as err:
        raise unreachable(address, _connect_reason(err)) from None
    return Temporal(client=client, address=address)


async def describe(t: Temporal, service: str) -> WorkflowExecutionDescription:
    """The latest run of the service's rollout; no rollout at all is exit 2."""
    try:
        return await t.handle(service).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND and "namespace" not in err.message.lower():
            raise CliError(
                f"there is no rollout for service {service!r} "
                f"(no workflow {workflow_id_for(service)} in namespace {t.namespace}).",
                ExitCode.INVALID,
            ) from None
        raise t.rpc_error(err, f"describe {workflow_id_for(service)}") from None


async def query_status(handle: RolloutHandle, wait_seconds: float) -> RolloutStatus | None:
    """Ask the workflow (through a worker) for its status; None if nobody answered in time."""
    try:
        with telemetry.untraced():
            status: RolloutStatus = await handle.query(
                QUERY_STATUS, result_type=RolloutStatus, rpc_timeout=timedelta(seconds=wait_seconds)
            )
    except (RPCError, WorkflowQueryFailedError, TimeoutError):
        return None
    return status


def _status_name(desc: WorkflowExecutionDescription) -> str:
    return desc.status.name.lower().replace("_", " ") if desc.status else "unknown"


def is_running(desc: WorkflowExecutionDescription) -> bool:
    return desc.status == WorkflowExecutionStatus.RUNNING


# --- status ---------------------------------------------------------------------------------


async def current_status(
    t: Temporal, service: str
) -> tuple[RolloutStatus | None, WorkflowExecutionDescription]:
    """The rollout's status: its result once completed (no worker needed), else the query."""
    desc = await describe(t, service)
    handle = t.handle(service, run_id=desc.run_id)
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        try:
            return await handle.result(follow_runs=False), desc
        except (WorkflowFailureError, RPCError):
            pass
    return await query_status(handle, wait_seconds=5.0 if is_running(desc) else 3.0), desc


def closed_note(desc: WorkflowExecutionDescription) -> str | None:
    """Why a closed rollout's status may read as unfinished: it did not end on its own."""
    if desc.status in (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED):
        return None
    if desc.status == WorkflowExecutionStatus.TERMINATED:
        return (
            f"the workflow was terminated at {when(desc.close_time)}: no rollback ran, "
            "so traffic stays where this status says; check the router"
        )
    return f"the workflow is {_status_name(desc)} since {when(desc.close_time)}"


def fallback_summary(desc: WorkflowExecutionDescription) -> list[str]:
    """What the search attributes say when no worker answers the status query."""
    attrs = desc.typed_search_attributes
    weight = attrs.get(sa.WEIGHT)
    return [
        f"{attrs.get(sa.SERVICE) or desc.id} {attrs.get(sa.VERSION) or '?'}: "
        f"{(attrs.get(sa.PHASE) or 'unknown phase').upper()} (from search attributes)",
        f"  workflow  {desc.id} is {_status_name(desc)}",
        f"  weight    {'-' if weight is None else f'{weight}% on the new version'}",
        f"  started   {when(desc.start_time)}",
        *([f"  closed    {when(desc.close_time)}"] if desc.close_time else []),
    ]


async def show_status(t: Temporal, service: str, console: Console) -> ExitCode:
    status, desc = await current_status(t, service)
    if status is not None:
        note = closed_note(desc)
        if console.json_output:
            if note:
                console.warn(note)
            console.data(status)
        else:
            console.say(*render_status(status, t.ui_link(service), note))
        return ExitCode.OK
    if not console.json_output:
        console.say(*fallback_summary(desc), f"  web UI    {t.ui_link(service)}")
    raise CliError(
        f"no worker answered the status query of {desc.id}; {NO_WORKER_HINT}",
        ExitCode.UNAVAILABLE,
    )


# --- start ----------------------------------------------------------------------------------


async def start(t: Temporal, spec: AnySpec, by: str, console: Console) -> RolloutHandle:
    """Start the rollout, or attach to the same one already running (a CI re-run).

    Another rollout running for the service is exit 4, naming it.
    """
    digest = spec.digest()
    for _ in range(2):  # a second try only if the running one ended while we looked at it
        try:
            workflow_input: RolloutInput | RingRolloutInput
            if isinstance(spec, RingRolloutSpec):
                workflow_type = RING_WORKFLOW_TYPE
                workflow_input = RingRolloutInput(spec=spec, spec_digest=digest, started_by=by)
            else:
                workflow_type = WORKFLOW_TYPE
                workflow_input = RolloutInput(spec=spec, spec_digest=digest, started_by=by)
            return await t.client.start_workflow(
                workflow_type,
                workflow_input,
                id=spec.workflow_id,
                task_queue=TASK_QUEUE,
                result_type=RolloutStatus,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
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
                    "started_by": by,
                    telemetry.MEMO_TRACE: telemetry.current_carrier(),
                },
                static_summary=static_summary(spec),
                static_details=static_details(build_plan(spec), by),
            )
        except WorkflowAlreadyStartedError:
            handle = await _attach(t, spec, digest, console)
            if handle is not None:
                return handle
        except RPCError as err:
            if err.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in err.message:
                names = ", ".join(f"{k}={v}" for k, v in sa.REGISTRATION.items())
                raise CliError(
                    f"Temporal at {t.address} rejected the rollout's search attributes: "
                    f"{err.message}. Register them ({names}) with `temporal operator "
                    "search-attribute create`, or use `sluice dev`.",
                    ExitCode.UNAVAILABLE,
                ) from None
            raise t.rpc_error(err, f"start {spec.workflow_id}") from None
    raise CliError(f"{spec.workflow_id} keeps starting and ending under us; try again.", ExitCode.UNAVAILABLE)


async def _attach(t: Temporal, spec: AnySpec, digest: str, console: Console) -> RolloutHandle | None:
    """The running rollout if it is this very spec; None if it just ended; else exit 4."""
    desc = await describe(t, spec.service)
    if not is_running(desc):
        return None
    handle = t.handle(spec.service, run_id=desc.run_id)
    running_digest = await desc.memo_value("spec_digest", None)
    running_version = desc.typed_search_attributes.get(sa.VERSION)
    status: RolloutStatus | None = None
    if running_digest is None:  # started by other means than `sluice start`: ask the workflow
        status = await query_status(handle, wait_seconds=5.0)
        if status is not None:
            running_digest, running_version = status.spec_digest, status.version
    if running_digest == digest and running_version == spec.version:
        console.say(
            f"attaching to the running rollout {desc.id} (same version {spec.version} and spec, "
            f"digest {digest}), started {when(desc.start_time)}"
        )
        return handle
    status = status or await query_status(handle, wait_seconds=3.0)
    if status is not None:
        where = (
            f"{status.version} at step {step_label(status.step_index, status.step_count)} "
            f"({status.step}), phase {status.phase.value}"
        )
    else:
        phase = desc.typed_search_attributes.get(sa.PHASE) or "unknown"
        weight = desc.typed_search_attributes.get(sa.WEIGHT)
        shown = "?" if weight is None else str(weight)
        where = f"{running_version or '?'}, phase {phase}, weight {shown}%"
    same = " (same version, different spec)" if running_version == spec.version else ""
    yours = f"; yours is {spec.version} (spec digest {digest})"
    raise CliError(
        f"another rollout is running for {spec.service}: {where}{same}, started "
        f"{when(desc.start_time)}{yours}. Wait for it to end or stop it with "
        f"`sluice abort {spec.service} --reason ...`.",
        ExitCode.CONFLICT,
    )


async def follow(
    t: Temporal,
    handle: RolloutHandle,
    service: str,
    console: Console,
    live: LiveView | None = None,
    on_final: Callable[[RolloutStatus], None] | None = None,
) -> ExitCode:
    """Print progress as the status changes, then the outcome; the exit code follows the phase.

    With `live` (a terminal) the status is redrawn in place; `on_final` gets the last status
    (e.g. for the CI step summary), whatever the outcome.
    """
    # Queries go to the latest run (a rollout may continue as new); the result follows runs.
    query_handle = t.handle(service)
    result = asyncio.ensure_future(handle.result())
    progress = Progress()
    last: RolloutStatus | None = None
    loop = asyncio.get_running_loop()
    began, warned = loop.time(), False

    def report(lines: list[str], status: RolloutStatus | None) -> None:
        if live is not None:
            live.update(lines, status, watching_line(began, loop.time()))
        else:
            for line in lines:
                console.progress(line)

    try:
        while not result.done():
            status = await query_status(query_handle, wait_seconds=2.0)
            if status is not None:
                last = status
                report(progress.update(status), status)
            elif last is None and not warned and loop.time() - began > 10:
                report([f"no answer to the status query yet; {NO_WORKER_HINT}"], None)
                warned = True
            elif live is not None:
                report([], None)
            await asyncio.wait({result}, timeout=POLL_INTERVAL)
    except asyncio.CancelledError:
        result.cancel()
        console.warn(f"stopped watching; the rollout goes on. Follow it with `sluice status {service}`.")
        raise
    try:
        final: RolloutStatus = result.result()
    except WorkflowFailureError as err:
        return await _ended_without_result(query_handle, err, last, progress, console, on_final)
    except RPCError as err:
        raise t.rpc_error(err, f"wait for {handle.id}") from None
    report(progress.update(final), final)
    if live is not None:
        live.close()
    if on_final is not None:
        on_final(final)
    code = exit_code_for(final.phase)
    console.say(f"{service} {final.version}: {final.phase.value}. {final.message}".rstrip())
    if console.json_output:
        console.data(final)
    return code


async def _ended_without_result(
    handle: RolloutHandle,
    err: WorkflowFailureError,
    last: RolloutStatus | None,
    progress: Progress,
    console: Console,
    on_final: Callable[[RolloutStatus], None] | None = None,
) -> ExitCode:
    """Cancelled (exit 3), terminated, timed out or failed (exit 5): say what traffic did."""
    final = await query_status(handle, wait_seconds=5.0) or last
    if final is not None:
        for line in progress.update(final):
            console.progress(line)
    cause = err.cause
    if isinstance(cause, temporal_errors.CancelledError):
        code, what = ExitCode.ABORTED, "was cancelled through Temporal"
    elif isinstance(cause, temporal_errors.TerminatedError):
        code = ExitCode.UNAVAILABLE
        what = "was terminated: no rollback ran, so check the router's weights"
    elif isinstance(cause, temporal_errors.TimeoutError):
        code, what = ExitCode.UNAVAILABLE, "timed out"
    else:
        code, what = ExitCode.UNAVAILABLE, f"failed: {cause or err}"
    state = f" Last known phase {final.phase.value}: {final.message}" if final else ""
    if final is not None and on_final is not None:
        on_final(final)
    console.say(f"{handle.id} {what}.{state}".rstrip())
    if console.json_output and final is not None:
        console.data(final)
    return code


# --- list -----------------------------------------------------------------------------------


async def list_rollouts(t: Temporal, service: str | None, limit: int) -> list[dict[str, Any]]:
    """Rollouts newest first, from the search attributes (no worker needed)."""
    query = f"WorkflowType IN ('{WORKFLOW_TYPE}', '{RING_WORKFLOW_TYPE}')"
    if service:
        query += f" AND {sa.SERVICE.name}='{service}'"
    rows: list[dict[str, Any]] = []
    try:
        async for wf in t.client.list_workflows(query=query, limit=limit):
            attrs = wf.typed_search_attributes
            if attrs.get(sa.SERVICE) is None:
                continue  # a ring's own rollout: listed through its ring rollout
            rows.append(
                {
                    "service": attrs.get(sa.SERVICE),
                    "version": attrs.get(sa.VERSION),
                    "phase": attrs.get(sa.PHASE),
                    "weight": attrs.get(sa.WEIGHT),
                    "workflow_id": wf.id,
                    "run_id": wf.run_id,
                    "temporal_status": wf.status.name.lower() if wf.status else "unknown",
                    "started": when(wf.start_time),
                    "started_at": wf.start_time.isoformat(),
                    "closed_at": wf.close_time.isoformat() if wf.close_time else None,
                }
            )
    except RPCError as err:
        raise t.rpc_error(err, "list workflows") from None
    return rows


# --- operator signals -----------------------------------------------------------------------


async def signal(
    t: Temporal, service: str, action: str, operator: OperatorInput, console: Console
) -> ExitCode:
    """Send pause/resume/promote/abort to a running rollout, then show the phase it reaches."""
    desc = await describe(t, service)
    if not is_running(desc):
        phase = desc.typed_search_attributes.get(sa.PHASE)
        raise CliError(
            f"the rollout of {service} is not running (it is {_status_name(desc)} since "
            f"{when(desc.close_time)}{f', phase {phase}' if phase else ''}); "
            f"there is nothing to {action}.",
            ExitCode.INVALID,
        )
    handle = t.handle(service, run_id=desc.run_id)
    before = await query_status(handle, wait_seconds=2.0)
    carrier = await _memo_carrier(desc)
    try:
        attributes = {"sluice.service": service, "sluice.by": operator.by}
        with telemetry.cli_span(f"sluice {action}", attributes, carrier):
            await handle.signal(action, operator)
    except RPCError as err:
        raise t.rpc_error(err, f"signal {desc.id}") from None
    console.say(f"sent {action} to {desc.id} (by {operator.by}: {operator.reason})")
    after, handled = before, False
    if before is not None:
        # The workflow has handled the signal once its action log grows; give it ~3 s.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while not handled and loop.time() < deadline:
            await asyncio.sleep(0.3)
            now = await query_status(handle, wait_seconds=1.0)
            if now is not None:
                after = now
                handled = len(now.actions) > len(before.actions) or now.phase != before.phase
    if after is None:
        console.say(f"no worker answered the status query; the signal waits for one ({NO_WORKER_HINT})")
    elif handled:
        console.say(
            f"phase now {after.phase.value} at step "
            f"{step_label(after.step_index, after.step_count)} ({after.step})"
            + (f": {after.message}" if after.message else "")
        )
    else:
        console.say(
            f"phase still {after.phase.value}; the workflow has not acted on the signal yet "
            f"(check with `sluice status {service}`)"
        )
    if console.json_output:
        console.data(
            {
                "workflow_id": desc.id,
                "signal": action,
                "reason": operator.reason,
                "by": operator.by,
                "status": after.model_dump(mode="json") if after else None,
            }
        )
    return ExitCode.OK


async def _memo_carrier(desc: WorkflowExecutionDescription) -> dict[str, str] | None:
    """The rollout's trace context from its memo (absent for rollouts started otherwise)."""
    try:
        value = await desc.memo_value(telemetry.MEMO_TRACE, None)
    except Exception:  # a memo this process cannot decode (another codec key): no parent
        return None
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    return None


# --- approval -------------------------------------------------------------------------------


async def approve(t: Temporal, service: str, operator: OperatorInput, console: Console) -> ExitCode:
    """Send the `approve` update to the gate that waits: the rollout's own, or its running ring's.

    The workflow's validator refuses anyone the gate does not list (exit 2, nothing recorded).
    """
    desc = await describe(t, service)
    if not is_running(desc):
        raise CliError(
            f"the rollout of {service} is not running; there is nothing to approve.", ExitCode.INVALID
        )
    handle = t.handle(service, run_id=desc.run_id)
    target = handle
    status = await query_status(handle, wait_seconds=3.0)
    if status is not None and status.approval is None:
        # A ring rollout whose running ring waits at an approval step: approve that ring.
        running = [r for r in status.rings if r.phase not in ("pending",) and not Phase(r.phase).is_final]
        if running:
            target = t.client.get_workflow_handle(running[0].workflow_id, result_type=RolloutStatus)
    try:
        after: RolloutStatus = await target.execute_update(
            UPDATE_APPROVE, operator, result_type=RolloutStatus, rpc_timeout=timedelta(seconds=10)
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        message = getattr(cause, "message", None) or str(cause or err)
        raise CliError(f"approval refused by {target.id}: {message}", ExitCode.INVALID) from None
    except RPCError as err:
        raise t.rpc_error(err, f"approve {target.id}") from None
    console.say(f"approved {target.id} (by {operator.by}: {operator.reason}); phase now {after.phase.value}")
    if console.json_output:
        console.data(
            {"workflow_id": target.id, "by": operator.by, "reason": operator.reason, "status": after}
        )
    return ExitCode.OK
