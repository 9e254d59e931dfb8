"""The live gauges' refresh (sluice.runtime.gauges) on a stand-in client and meter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from sluice.contracts import search_attributes as sa
from sluice.contracts.status import Phase, RingStatus, RolloutStatus, Weights
from sluice.runtime.gauges import RolloutGauges

T = datetime(2026, 12, 1, tzinfo=UTC)


class Gauge:
    def __init__(self, name: str, values: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
        self.name, self.values = name, values

    def set(self, value: float, attrs: dict[str, str]) -> None:
        self.values[self.name, tuple(sorted(attrs.items()))] = value


class Meter:
    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def create_gauge(self, name: str, description: str = "", unit: str = "") -> Gauge:
        return Gauge(name, self.values)


def execution(service: str, kind: str, phase: str, weight: int, start: int, running: bool) -> Any:
    attrs = TypedSearchAttributes(
        [
            SearchAttributePair(sa.SERVICE, service),
            SearchAttributePair(sa.PHASE, phase),
            SearchAttributePair(sa.WEIGHT, weight),
        ]
    )
    status = WorkflowExecutionStatus.RUNNING if running else WorkflowExecutionStatus.COMPLETED
    return SimpleNamespace(
        id=f"rollout-{service}",
        run_id=f"run-{start}",
        workflow_type=kind,
        typed_search_attributes=attrs,
        status=status,
        start_time=T.replace(minute=start),
        close_time=None if running else T.replace(minute=start + 1),
    )


class Client:
    def __init__(self, executions: list[Any], rings: list[RingStatus]) -> None:
        self._executions, self._rings = executions, rings
        self.temporal = SimpleNamespace(list_workflows=self._list)

    async def _list(self, query: str, page_size: int = 1000) -> AsyncIterator[Any]:
        assert "ExecutionStatus = 'Running'" in query
        for e in self._executions:
            yield e

    async def status_of(self, record: Any) -> RolloutStatus:
        return RolloutStatus(
            service="web",
            version="v2",
            spec_digest="d",
            phase=Phase.PROGRESSING,
            message="",
            step_index=1,
            step_count=2,
            step="ring eu",
            started_at=T,
            rings=self._rings,
        )


async def test_latest_rollout_per_service_and_each_ring() -> None:
    meter = Meter()
    client = Client(
        [
            execution("checkout", "Rollout", "rolled_back", 0, 1, running=False),
            execution("checkout", "Rollout", "paused", 25, 5, running=True),  # the latest
            execution("web", "RingRollout", "progressing", 50, 2, running=True),
        ],
        [
            RingStatus(
                name="us", workflow_id="w-us", phase=Phase.PROMOTED, weights=Weights(stable=0, canary=100)
            ),
            RingStatus(
                name="eu", workflow_id="w-eu", phase=Phase.PROGRESSING, weights=Weights(stable=90, canary=10)
            ),
            RingStatus(name="ap", workflow_id="w-ap"),
        ],
    )
    gauges = RolloutGauges(client, meter)  # type: ignore[arg-type]
    assert await gauges.refresh() == 2
    v = meter.values

    def get(name: str, **labels: str) -> float:
        return v[name, tuple(sorted(labels.items()))]

    assert get("sluice_rollout_weight", sluice_service="checkout", sluice_ring="") == 25
    assert get("sluice_rollout_phase", sluice_service="checkout", sluice_ring="", sluice_phase="paused") == 1
    assert (
        get("sluice_rollout_phase", sluice_service="checkout", sluice_ring="", sluice_phase="rolled_back")
        == 0
    )
    assert get("sluice_rollout_running", sluice_service="checkout") == 1
    assert get("sluice_rollout_weight", sluice_service="web", sluice_ring="") == 50
    assert get("sluice_rollout_weight", sluice_service="web", sluice_ring="us") == 100
    assert get("sluice_rollout_weight", sluice_service="web", sluice_ring="eu") == 10
    assert (
        get("sluice_rollout_phase", sluice_service="web", sluice_ring="eu", sluice_phase="progressing") == 1
    )
    assert get("sluice_rollout_weight", sluice_service="web", sluice_ring="ap") == 0
    pending = [
        get("sluice_rollout_phase", sluice_service="web", sluice_ring="ap", sluice_phase=p.value)
        for p in Phase
    ]
    assert pending == [0] * len(Phase)  # a ring not started is in no phase
