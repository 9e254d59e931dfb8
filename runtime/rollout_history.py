"""Read rollouts back from Temporal for `sluice report`: visibility, each run's result and history.

A finished rollout's history holds everything the report needs in one paginated read: the
final `RolloutStatus` (the completion's result), the phase changes (`SluicePhase` upserts),
every traffic change read back (`preflight`, `set_traffic`, `rollback_traffic` results) and
every analysis tick (`analyze` results), each at the time Temporal recorded it. Payloads are
decoded with the client's data converter (so an encrypting codec applies). No worker needed:
a cancelled rollout, which has no result, gets its status rebuilt from the same history.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.service import RPCError

from sluice.contracts import search_attributes as sa
from sluice.contracts.calls import (
    AnalyzeResult,
    OperatorInput,
    RingRolloutInput,
    RollbackInput,
    RolloutInput,
    TrafficState,
)
from sluice.contracts.names import RING_WORKFLOW_TYPE, WORKFLOW_TYPE
from sluice.contracts.status import (
    OperatorAction,
    OperatorActionKind,
    Phase,
    RollbackState,
    RolloutStatus,
    Weights,
)
from sluice.runtime.client import RolloutNotFound, RolloutRecord, SluiceClient
from sluice.runtime.insights import PhaseSpan, RolloutRun, RunTimeline, Tick, WeightPoint

HISTORY_CONCURRENCY = 16
"""Histories read at once: enough to hide round trips, few enough not to crowd the frontend."""
MAX_CHAIN = 100
"""Runs of one rollout followed back through continue-as-new (each carries the status whole)."""

_TRAFFIC = {"preflight": "preflight", "set_traffic": "set_traffic", "rollback_traffic": "rollback"}
_VERBS: dict[str, OperatorActionKind] = {
    "pause": "pause",
    "resume": "resume",
    "promote": "promote",
    "abort": "abort",
    "approve": "approve",
}


def visibility_query(since: datetime | None, service: str | None) -> str:
    """Sluice's rollouts (ring rollouts once: their rings carry no search attributes)."""
    query = f"WorkflowType IN ('{WORKFLOW_TYPE}', '{RING_WORKFLOW_TYPE}')"
    if since is not None:
        query += f" AND StartTime >= '{since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    if service is not None:
        query += f" AND {sa.SERVICE.name} = '{service}'"
    return query


async def list_records(
    client: SluiceClient, since: datetime | None, service: str | None
) -> list[RolloutRecord]:
    """Every rollout run in the window, page by page (runs that continued as new are left out:
    the run they continued into carries their status)."""
    records: list[RolloutRecord] = []
    try:
        async for execution in client.temporal.list_workflows(
            visibility_query(since, service), page_size=1000
        ):
            record = RolloutRecord.of(execution)
            if record.service is not None and record.temporal_status != "continued_as_new":
                records.append(record)
    except RPCError as err:
        raise client._rpc_error(err, "list workflows") from None
    return records


@dataclass
class _Reading:
    """What one pass over a chain of histories collected, oldest run first."""

    workflow_type: str = ""
    start_input: RolloutInput | RingRolloutInput | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    result: RolloutStatus | None = None
    phase_changes: list[tuple[datetime, str]] = field(default_factory=list)
    weights: list[WeightPoint] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    actions: list[OperatorAction] = field(default_factory=list)
    rollback_started: datetime | None = None
    rollback_reason: str | None = None
    rollback_verified: datetime | None = None


async def read_run(client: SluiceClient, record: RolloutRecord) -> RolloutRun:
    """One rollout read from its history (and the histories it continued from)."""
    chain = [record.run_id]
    events_by_run: dict[str, list[HistoryEvent]] = {}
    run_id: str | None = record.run_id
    while run_id and len(chain) <= MAX_CHAIN:
        events = await _history(client, record.workflow_id, run_id)
        events_by_run[run_id] = events
        first = events[0].workflow_execution_started_event_attributes if events else None
        run_id = first.continued_execution_run_id if first is not None else None
        if run_id:
            chain.insert(0, run_id)
    reading = _Reading()
    for rid in chain:
        if rid in events_by_run:
            await _read_events(client, events_by_run[rid], reading, first_run=rid == chain[0])
    status = reading.result or _rebuilt_status(reading, record)
    return RolloutRun(
        workflow_id=record.workflow_id,
        run_id=record.run_id,
        temporal_status=record.temporal_status,
        status=status,
        timeline=RunTimeline(
            phases=_spans(reading.phase_changes, reading.closed_at or datetime.now(UTC)),
            weights=reading.weights,
            ticks=reading.ticks,
        ),
    )


async def read_runs(client: SluiceClient, records: Sequence[RolloutRecord]) -> list[RolloutRun]:
    """`read_run` for each record, `HISTORY_CONCURRENCY` at a time, in the records' order."""
    gate = asyncio.Semaphore(HISTORY_CONCURRENCY)

    async def one(record: RolloutRecord) -> RolloutRun | None:
        async with gate:
            try:
                return await read_run(client, record)
            except RPCError as err:
                if "not found" in err.message.lower():
                    return None  # deleted by retention between the listing and the read
                raise client._rpc_error(err, f"read the history of {record.workflow_id}") from None

    runs = await asyncio.gather(*(one(r) for r in records))
    return [r for r in runs if r is not None]


async def latest_record(client: SluiceClient, service: str, run_id: str | None = None) -> RolloutRecord:
    """The service's latest run, or the run `run_id` names (`RolloutNotFound` if none)."""
    if run_id is None:
        return await client.record(service)
    handle = client.temporal.get_workflow_handle(f"rollout-{service}", run_id=run_id)
    try:
        return RolloutRecord.of(await handle.describe())
    except RPCError as err:
        if "not found" in err.message.lower():
            raise RolloutNotFound(service, client.namespace) from None
        raise client._rpc_error(err, f"describe run {run_id}") from None


# --- reading events ---------------------------------------------------------------------------


async def _history(client: SluiceClient, workflow_id: str, run_id: str) -> list[HistoryEvent]:
    handle = client.temporal.get_workflow_handle(workflow_id, run_id=run_id)
    return [event async for event in handle.fetch_history_events(page_size=1000)]


_READ = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)
"""The event types the report reads; the rest are skipped before any decoding."""


def _phase(attributes: SearchAttributes) -> str | None:
    """`SluicePhase` from a start or upsert event (a plain JSON payload, read directly: the SDK's
    typed decoding of every attribute costs more than the rest of the event)."""
    payload = attributes.indexed_fields.get(sa.PHASE.name)
    if payload is None:
        return None
    try:
        value = json.loads(payload.data)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


async def _decode(client: SluiceClient, payloads: Sequence[Payload], kind: type[Any]) -> Any:
    """The first payload as `kind`; None if absent or unreadable (a workflow started by other
    means, an older model, another codec key): the report then does without that item."""
    if not payloads:
        return None
    try:
        values = await client.temporal.data_converter.decode(list(payloads[:1]), [kind])
    except Exception:
        return None
    return values[0]


async def _read_events(
    client: SluiceClient, events: Sequence[HistoryEvent], reading: _Reading, first_run: bool
) -> None:
    scheduled: dict[int, str] = {}
    for event in events:
        kind = event.event_type
        if kind not in _READ:
            continue  # workflow tasks, timers, activity starts: most of a history
        at = _time(event)
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attrs = event.workflow_execution_started_event_attributes
            if first_run:
                reading.workflow_type = attrs.workflow_type.name
                reading.started_at = at
                input_type = (
                    RingRolloutInput if attrs.workflow_type.name == RING_WORKFLOW_TYPE else RolloutInput
                )
                reading.start_input = await _decode(client, attrs.input.payloads, input_type)
                phase = _phase(attrs.search_attributes)
                if phase:
                    reading.phase_changes.append((at, phase))
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            upserted = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            phase = _phase(upserted)
            if phase and (not reading.phase_changes or reading.phase_changes[-1][1] != phase):
                reading.phase_changes.append((at, phase))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs_a = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs_a.activity_type.name
            if attrs_a.activity_type.name == "rollback_traffic" and reading.rollback_started is None:
                # The rollback began here (it may never complete: a failed rollback).
                reading.rollback_started = at
                ordered: RollbackInput | None = await _decode(client, attrs_a.input.payloads, RollbackInput)
                reading.rollback_reason = ordered.reason if ordered is not None else None
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs_c = event.activity_task_completed_event_attributes
            activity = scheduled.get(attrs_c.scheduled_event_id, "")
            payloads = attrs_c.result.payloads
            if activity in _TRAFFIC:
                state: TrafficState | None = await _decode(client, payloads, TrafficState)
                if state is None:
                    continue
                source = _TRAFFIC[activity]
                reading.weights.append(
                    WeightPoint(
                        at=at,
                        stable=state.stable_weight,
                        canary=state.canary_weight,
                        source=source,
                    )
                )
                if source == "rollback":
                    reading.rollback_verified = at
            elif activity == "analyze":
                result: AnalyzeResult | None = await _decode(client, payloads, AnalyzeResult)
                if result is None:
                    continue
                reading.ticks.append(Tick(number=len(reading.ticks) + 1, at=at, verdicts=result.verdicts))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs_s = event.workflow_execution_signaled_event_attributes
            verb = _VERBS.get(attrs_s.signal_name)
            if verb is not None:
                op: OperatorInput | None = await _decode(client, attrs_s.input.payloads, OperatorInput)
                reading.actions.append(_action(verb, op, at, attrs_s.identity))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            verb = _VERBS.get(request.input.name)
            if verb is not None:
                op = await _decode(client, request.input.args.payloads, OperatorInput)
                reading.actions.append(_action(verb, op, at, ""))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            reading.actions.append(
                OperatorAction(
                    action="cancel", reason="Temporal cancel request", by="temporal", at=at, step_index=0
                )
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            reading.closed_at = at
            payloads = event.workflow_execution_completed_event_attributes.result.payloads
            reading.result = await _decode(client, payloads, RolloutStatus)
        elif kind in (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
        ):
            reading.closed_at = at


def _action(
    verb: OperatorActionKind, op: OperatorInput | None, at: datetime, identity: str
) -> OperatorAction:
    by = (op.by if op is not None else "") or identity or "unknown"
    return OperatorAction(action=verb, reason=op.reason if op is not None else "", by=by, at=at, step_index=0)


def _spans(changes: list[tuple[datetime, str]], end: datetime) -> list[PhaseSpan]:
    spans = []
    for i, (at, phase) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else end
        spans.append(PhaseSpan(phase=phase, start=at, end=max(until, at)))
    return spans


def _rebuilt_status(reading: _Reading, record: RolloutRecord) -> RolloutStatus:
    """The status of a run that closed without a result (a Temporal cancel, a terminate),
    rebuilt from its history: phases, weights, ticks, operator actions, the rollback."""
    inp = reading.start_input
    spec = inp.spec if inp is not None else None
    phases = [p for _, p in reading.phase_changes]
    last_phase = (
        Phase(phases[-1]) if phases and phases[-1] in Phase.__members__.values() else Phase.PROGRESSING
    )
    rollback = None
    if reading.rollback_started is not None:
        cancelled = any(a.action == "cancel" for a in reading.actions)
        rollback = RollbackState(
            reason=reading.rollback_reason or ("the workflow was cancelled" if cancelled else "rolled back"),
            started_at=reading.rollback_started,
            verified_at=reading.rollback_verified,
        )
    last_weights = reading.weights[-1] if reading.weights else None
    return RolloutStatus(
        service=spec.service if spec is not None else (record.service or "?"),
        version=spec.version if spec is not None else (record.version or "?"),
        stable_version=spec.stable_version if spec is not None else None,
        spec_digest=inp.spec_digest if inp is not None else "",
        phase=last_phase,
        message=f"the workflow closed without a result ({record.status_words}); rebuilt from its history",
        step_index=0,
        step_count=0,
        step="",
        weights=Weights(stable=last_weights.stable, canary=last_weights.canary) if last_weights else None,
        verdicts=reading.ticks[-1].verdicts if reading.ticks else [],
        actions=reading.actions,
        rollback=rollback,
        traffic_touched=bool(reading.weights),
        started_at=reading.started_at or record.started_at,
        finished_at=reading.closed_at or record.closed_at,
    )
