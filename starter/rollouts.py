"""How the CLI shows what `sluice.runtime.client` does: start, follow, status, list, signals, approval.

The Temporal calls live in `SluiceClient`; this module only prints their typed results,
as text for people or JSON for scripts, and returns the exit code. The client's typed
errors pass through to `main`, which prints their message and maps them to exit codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from sluice.cli.ci import LiveView, watching_line
from sluice.cli.console import Console
from sluice.cli.exits import ExitCode, exit_code_for, exit_code_for_error
from sluice.cli.render import Progress, render_status, step_label
from sluice.contracts.spec import AnySpec
from sluice.contracts.status import RolloutStatus
from sluice.contracts.text import utc_time as when
from sluice.runtime.client import (
    FORCED_ABORT,
    NO_WORKER_HINT,
    ApprovalResult,
    ConnectionLost,
    Ended,
    NoWorker,
    Reconnected,
    RolloutEndedWithoutResult,
    RolloutRecord,
    SignalResult,
    SluiceClient,
    StartResult,
    StatusPolled,
)

if TYPE_CHECKING:
    from sluice.runtime.breakglass import ForcedAbort

# --- status ---------------------------------------------------------------------------------


def closed_note(record: RolloutRecord, termination_reason: str | None = None) -> str | None:
    """Why a closed rollout's status may read as unfinished: it did not end on its own."""
    if record.temporal_status in ("running", "completed", "unknown"):
        return None
    if termination_reason and termination_reason.startswith(FORCED_ABORT):
        return f"the workflow was ended at {when(record.closed_at)} by {termination_reason}"
    if record.temporal_status == "terminated":
        return (
            f"the workflow was terminated at {when(record.closed_at)}: no rollback ran, "
            "so traffic stays where this status says; check the router"
        )
    return f"the workflow is {record.status_words} since {when(record.closed_at)}"


def fallback_summary(record: RolloutRecord) -> list[str]:
    """What the search attributes say when no worker answers the status query."""
    weight = record.weight
    return [
        f"{record.service or record.workflow_id} {record.version or '?'}: "
        f"{(record.phase or 'unknown phase').upper()} (from search attributes)",
        f"  workflow  {record.workflow_id} is {record.status_words}",
        f"  weight    {'-' if weight is None else f'{weight}% on the new version'}",
        f"  started   {when(record.started_at)}",
        *([f"  closed    {when(record.closed_at)}"] if record.closed_at else []),
    ]


async def show_status(client: SluiceClient, service: str, console: Console) -> ExitCode:
    """Print the latest rollout's status; with no worker, what Temporal knows, then `NoWorker`."""
    record = await client.record(service)
    note = closed_note(record, await client.termination_reason(record))
    try:
        status = await client.status_of(record)
    except NoWorker:
        if not console.json_output:
            console.say(*fallback_summary(record), f"  web UI    {client.ui_link(service)}")
            if note:
                console.say(f"  note      {note}")
        raise
    if console.json_output:
        if note:
            console.warn(note)
        console.data(status)
    else:
        console.say(*render_status(status, client.ui_link(service), note))
    return ExitCode.OK


# --- start ----------------------------------------------------------------------------------


def say_attached(spec: AnySpec, started: StartResult, console: Console) -> None:
    console.say(
        f"attaching to the running rollout {started.workflow_id} (same version {spec.version} and spec, "
        f"digest {started.spec_digest}), started {when(started.started_at)}"
    )


def say_already_promoted(
    client: SluiceClient,
    spec: AnySpec,
    started: StartResult,
    console: Console,
    wait: bool,
    on_final: Callable[[RolloutStatus], None] | None = None,
) -> ExitCode:
    """A re-run of a promoted spec: say so; with `wait`, print the final status as `follow` would."""
    final = started.status
    assert final is not None  # ALREADY_PROMOTED always carries it
    console.say(
        f"{spec.service} {spec.version} is already promoted with this spec (digest {started.spec_digest}) "
        f"by {started.workflow_id}, finished {when(final.finished_at)}: nothing to do, traffic stays on "
        f"{spec.version}. Rerun it from step 1 with `sluice start --force`."
    )
    if wait:
        if on_final is not None:
            on_final(final)
        if console.json_output:
            console.data(final)
        else:
            console.say(*render_status(final, client.ui_link(spec.service)))
            console.say(f"{spec.service} {final.version}: {final.phase.value}. {final.message}".rstrip())
    return exit_code_for(final.phase)


async def follow(
    client: SluiceClient,
    service: str,
    run_id: str | None,
    console: Console,
    live: LiveView | None = None,
    on_final: Callable[[RolloutStatus], None] | None = None,
) -> ExitCode:
    """Print progress as the status changes, then the outcome; the exit code follows the phase.

    With `live` (a terminal) the status is redrawn in place; `on_final` gets the last status
    (e.g. for the CI step summary), whatever the outcome. A lost connection to Temporal is
    said once, retried (see `SluiceClient.follow`) and does not change the exit code.
    """
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

    final: RolloutStatus | None = None
    try:
        async for event in client.follow(service, run_id):
            if isinstance(event, StatusPolled):
                if event.status is not None:
                    last = event.status
                    report(progress.update(event.status), event.status)
                elif last is None and not warned and loop.time() - began > 10:
                    report([f"no answer to the status query yet; {NO_WORKER_HINT}"], None)
                    warned = True
                elif live is not None:
                    report([], None)
            elif isinstance(event, ConnectionLost):
                report(
                    [
                        f"lost Temporal at {client.address} ({event.reason}); the rollout goes on. "
                        f"Retrying for up to {event.retry_for:g}s."
                    ],
                    None,
                )
            elif isinstance(event, Reconnected):
                report([f"Temporal answers again (after {event.after:.0f}s); still following"], None)
            elif isinstance(event, Ended):
                final = event.status
    except asyncio.CancelledError:
        console.warn(f"stopped watching; the rollout goes on. Follow it with `sluice status {service}`.")
        raise
    except RolloutEndedWithoutResult as err:
        return _ended_without_result(err, progress, console, on_final)
    assert final is not None  # `follow` ends with `Ended` or raises
    report(progress.update(final), final)
    if live is not None:
        live.close()
    if on_final is not None:
        on_final(final)
    console.say(f"{service} {final.version}: {final.phase.value}. {final.message}".rstrip())
    if console.json_output:
        console.data(final)
    return exit_code_for(final.phase)


def _ended_without_result(
    err: RolloutEndedWithoutResult,
    progress: Progress,
    console: Console,
    on_final: Callable[[RolloutStatus], None] | None = None,
) -> ExitCode:
    """Cancelled (exit 3), terminated, timed out or failed (exit 5): say what traffic did."""
    final = err.last_status
    if final is not None:
        for line in progress.update(final):
            console.progress(line)
        if on_final is not None:
            on_final(final)
    console.say(err.message)
    if console.json_output and final is not None:
        console.data(final)
    return exit_code_for_error(err)


# --- list -----------------------------------------------------------------------------------


def list_rows(records: list[RolloutRecord]) -> list[dict[str, object]]:
    """`sluice list --output json`: one object per run (the keys are part of the CLI's contract)."""
    return [
        {
            "service": r.service,
            "version": r.version,
            "phase": r.phase,
            "weight": r.weight,
            "workflow_id": r.workflow_id,
            "run_id": r.run_id,
            "temporal_status": r.temporal_status,
            "started": when(r.started_at),
            "started_at": r.started_at.isoformat(),
            "closed_at": r.closed_at.isoformat() if r.closed_at else None,
        }
        for r in records
    ]


# --- operator signals and approval ----------------------------------------------------------


def say_signalled(sent: SignalResult, service: str, console: Console) -> ExitCode:
    """What the workflow did with a signal within a few seconds."""
    operator, after = sent.operator, sent.after
    console.say(f"sent {sent.verb} to {sent.workflow_id} (by {operator.by}: {operator.reason})")
    if after is None:
        console.say(f"no worker answered the status query; the signal waits for one ({NO_WORKER_HINT})")
    elif sent.handled:
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
                "workflow_id": sent.workflow_id,
                "signal": sent.verb,
                "reason": operator.reason,
                "by": operator.by,
                "status": after.model_dump(mode="json") if after else None,
            }
        )
    return ExitCode.OK


def say_approved(approved: ApprovalResult, console: Console) -> ExitCode:
    operator = approved.operator
    who = f"{operator.by}, signature verified" if operator.signature else f"{operator.by}, unverified"
    console.say(
        f"approved {approved.workflow_id} (by {who}: {operator.reason}); "
        f"phase now {approved.status.phase.value}"
    )
    if console.json_output:
        console.data(
            {
                "workflow_id": approved.workflow_id,
                "by": operator.by,
                "verified": bool(operator.signature),
                "reason": operator.reason,
                "status": approved.status,
            }
        )
    return ExitCode.OK


def say_forced(forced: ForcedAbort, console: Console) -> ExitCode:
    """`abort --force`: each router's split before and as read back, and what was recorded."""
    operator = forced.operator
    console.say(
        f"forced abort of {forced.workflow_id} ({forced.service} {forced.version or '?'}; "
        f"by {operator.by}: {operator.reason})"
    )
    for split in forced.routers:
        console.say(f"  {split.words()}")
    console.say("100% stable applied from this machine and read back on every router.")
    if forced.moved_after_terminate:
        console.say(
            "the split moved again after the terminate (a traffic change still in flight on a worker) "
            f"and was set back: {', '.join(forced.moved_after_terminate)}"
        )
    if forced.temporal_status != "running":
        console.say(
            f"the workflow had already ended ({forced.temporal_status.replace('_', ' ')}); "
            "nothing recorded on it."
        )
    else:
        signal = (
            "`abort` signal recorded"
            if forced.signalled
            else f"the `abort` signal could not be delivered ({forced.signal_error})"
        )
        end = "workflow terminated" if forced.terminated else f"not terminated: {forced.terminate_error}"
        console.say(f"{signal}; {end}; its own rollback did not run.")
    if console.json_output:
        console.data(
            {
                "workflow_id": forced.workflow_id,
                "run_id": forced.run_id,
                "service": forced.service,
                "version": forced.version,
                "by": operator.by,
                "reason": operator.reason,
                "temporal_status": forced.temporal_status,
                "routers": [
                    {
                        "router": s.label,
                        "before": s.before.model_dump(mode="json") if s.before else None,
                        "after": s.after.model_dump(mode="json") if s.after else None,
                        "verified": s.verified,
                    }
                    for s in forced.routers
                ],
                "signalled": forced.signalled,
                "terminated": forced.terminated,
                "termination_reason": forced.termination_reason,
                "moved_after_terminate": forced.moved_after_terminate,
            }
        )
    return ExitCode.OK
