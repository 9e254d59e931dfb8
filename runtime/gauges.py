"""Live gauges for dashboards: each service's rollout weight and phase (and each ring's).

A worker serving metrics (`--metrics-address`) refreshes them every `SLUICE_GAUGE_INTERVAL`
(default 10s) from the rollouts' search attributes (`SluiceWeight`, `SluicePhase`: one
visibility query, no history), plus a `status` query per running ring rollout for its rings.
Every worker exports the same values; a dashboard takes `max by (sluice_service)`.

Label names carry a `sluice_` prefix: Prometheus Operator's target labels (`service`,
`namespace`, `pod`, `instance`, `job`) would otherwise win, and ours would be renamed
`exported_service` and the like.

- `sluice_rollout_weight{sluice_service, sluice_ring}`: percent of traffic on the new version
  (`sluice_ring=""` for the rollout itself; for a ring rollout that is the percent of rings
  promoted, and each ring has its own series).
- `sluice_rollout_phase{sluice_service, sluice_ring, sluice_phase}`: 1 for the phase the
  service's latest rollout is in, 0 for every other phase (so a state timeline never shows two).
- `sluice_rollout_running{sluice_service}`: 1 while a rollout of the service runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowExecution
from temporalio.common import MetricGauge, MetricMeter

from sluice.contracts import search_attributes as sa
from sluice.contracts.durations import parse_duration
from sluice.contracts.names import RING_WORKFLOW_TYPE, WORKFLOW_TYPE
from sluice.contracts.status import Phase
from sluice.runtime.client import RolloutRecord, SluiceClient, SluiceError

INTERVAL_ENV = "SLUICE_GAUGE_INTERVAL"
DEFAULT_INTERVAL = timedelta(seconds=10)
RECENT = timedelta(hours=24)
"""Closed rollouts younger than this keep their service's gauges at its final weight and phase."""

log = logging.getLogger("sluice.gauges")


def interval_from_env() -> timedelta:
    """`$SLUICE_GAUGE_INTERVAL` (a duration like `10s`), else 10 s; a bad value raises ValueError."""
    value = os.environ.get(INTERVAL_ENV, "").strip()
    return parse_duration(value) if value else DEFAULT_INTERVAL


class RolloutGauges:
    """The gauges, and the refresh that sets them from Temporal's visibility store."""

    def __init__(self, client: SluiceClient, meter: MetricMeter) -> None:
        self._client = client
        self._weight: MetricGauge = meter.create_gauge(
            "sluice_rollout_weight", "Percent of traffic on the new version, as last read back", "%"
        )
        self._phase: MetricGauge = meter.create_gauge(
            "sluice_rollout_phase", "1 for the phase the service's latest rollout is in, else 0"
        )
        self._running: MetricGauge = meter.create_gauge(
            "sluice_rollout_running", "1 while a rollout of the service runs, else 0"
        )

    async def refresh(self) -> int:
        """Set every gauge from the latest rollout of each service seen recently; return how many."""
        since = (datetime.now(UTC) - RECENT).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = (
            f"WorkflowType IN ('{WORKFLOW_TYPE}', '{RING_WORKFLOW_TYPE}') "
            f"AND (ExecutionStatus = 'Running' OR CloseTime >= '{since}')"
        )
        latest: dict[str, WorkflowExecution] = {}
        async for execution in self._client.temporal.list_workflows(query, page_size=1000):
            service = execution.typed_search_attributes.get(sa.SERVICE)
            if service is None:
                continue
            seen = latest.get(service)
            if seen is None or execution.start_time > seen.start_time:
                latest[service] = execution
        for service, execution in latest.items():
            record = RolloutRecord.of(execution)
            self._set(service, "", record.weight or 0, record.phase)
            self._running.set(1 if record.running else 0, {"sluice_service": service})
            if record.running and execution.workflow_type == RING_WORKFLOW_TYPE:
                await self._rings(service, record)
        return len(latest)

    async def _rings(self, service: str, record: RolloutRecord) -> None:
        try:
            status = await self._client.status_of(record)
        except SluiceError:
            return  # no worker answered this time: the next refresh tries again
        for ring in status.rings:
            weight = ring.weights.canary if ring.weights is not None else 0
            self._set(service, ring.name, weight, ring.phase if ring.phase != "pending" else None)

    def _set(self, service: str, ring: str, weight: int, phase: str | None) -> None:
        labels = {"sluice_service": service, "sluice_ring": ring}
        self._weight.set(weight, labels)
        for each in Phase:
            self._phase.set(1 if each.value == phase else 0, {**labels, "sluice_phase": each.value})

    async def run(self, interval: timedelta) -> None:
        """Refresh every `interval` until cancelled; a failed refresh is logged and retried."""
        while True:
            try:
                await self.refresh()
            except Exception as err:  # a dashboard gauge must never take the worker down
                log.warning("could not refresh the rollout gauges: %s", err)
            await asyncio.sleep(interval.total_seconds())


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel the refresh loop and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
