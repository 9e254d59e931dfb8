"""Drift on a real HAProxy 2.6: weights set by hand and a real reload, noticed and re-applied.

The rollout runs on the time-skipping server with the real activities (`preflight`,
`set_traffic`, `analyze`, `rollback_traffic`) against HAProxy in master-worker mode (`-W`),
reloaded as systemd does it (SIGUSR2 to the master): the new worker starts from the config
file's weights unless the config keeps them in a `server-state-file`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from sluice.activities.rollout import analyze, preflight, read_traffic, rollback_traffic, set_traffic
from sluice.activities.routers import router_for
from sluice.contracts.calls import AnalyzeInput, OperatorInput, RolloutInput
from sluice.contracts.spec import HttpMetric, parse_spec
from sluice.contracts.status import Phase, RolloutStatus
from sluice.workflows.rollout import RolloutWorkflow
from tests.conftest import venv_binary
from tests.integration.conftest import SERVICE, DemoPair, _require, router_spec
from tests.support.haproxy import HAPROXY_BIN, HAProxyInstance, start_haproxy
from tests.support.procs import free_port

pytestmark = pytest.mark.integration


def _start(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair, keep_state: bool) -> HAProxyInstance:
    _require(HAPROXY_BIN)
    return start_haproxy(
        tmp_path_factory.mktemp("hap"),
        service=SERVICE,
        frontend_port=free_port(),
        stable_addr=demo.stable.addr,
        canary_addr=demo.canary.addr,
        master_worker=True,
        keep_state=keep_state,
    )


@pytest.fixture
def reloadable(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair) -> Iterator[HAProxyInstance]:
    """HAProxy in master-worker mode whose config keeps no server state (the default)."""
    instance = _start(tmp_path_factory, demo, keep_state=False)
    yield instance
    instance.stop()


@pytest.fixture
def stateful(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair) -> Iterator[HAProxyInstance]:
    """HAProxy in master-worker mode with `server-state-file` + `load-server-state-from-file`."""
    instance = _start(tmp_path_factory, demo, keep_state=True)
    yield instance
    instance.stop()


def split(instance: HAProxyInstance) -> tuple[int, int]:
    """(stable, canary) weights as HAProxy reports them."""
    stable = instance.command(f"get weight {instance.backend}/stable").split()[0]
    canary = instance.command(f"get weight {instance.backend}/canary").split()[0]
    return int(stable), int(canary)


async def test_a_reload_resets_runtime_weights(reloadable: HAProxyInstance) -> None:
    await router_for(router_spec(reloadable)).set_weights(10)
    assert split(reloadable) == (90, 10)
    reloadable.reload()
    assert split(reloadable) == (100, 0)  # the config file's weights: what issue 17 saw


async def test_a_reload_keeps_runtime_weights_saved_in_the_server_state_file(
    stateful: HAProxyInstance,
) -> None:
    await router_for(router_spec(stateful)).set_weights(10)
    stateful.save_server_state()  # what the reload script of docs/operations.md does first
    stateful.reload()
    assert split(stateful) == (90, 10)


async def test_analyze_reads_a_split_set_by_hand(reloadable: HAProxyInstance, demo: DemoPair) -> None:
    router = router_spec(reloadable)
    await router_for(router).set_weights(10)
    reloadable.command(f"set weight {reloadable.backend}/canary 50")
    reloadable.command(f"set weight {reloadable.backend}/stable 50")
    metric = HttpMetric.model_validate(
        {"name": "smoke", "provider": "http", "url": demo.canary.url + "/", "min_success_ratio": 1}
    )
    inp = AnalyzeInput(service=SERVICE, version="v2", router=router, metrics=[metric])
    # A slow measurement (1 s) with a 0.3 s heartbeat timeout: it heartbeats as it measures.
    demo.canary.control(latency_ms=1000)
    beats: list[object] = []
    measuring = ActivityEnvironment()
    measuring.info = dataclasses.replace(measuring.info, heartbeat_timeout=timedelta(milliseconds=300))
    measuring.on_heartbeat = lambda *details: beats.append(details)
    result = await measuring.run(analyze, inp)
    assert len(beats) >= 5, beats
    assert result.verdicts[0].metric == "smoke"
    assert result.weights is not None and (result.weights.stable_weight, result.weights.canary_weight) == (
        50,
        50,
    )
    reloadable.stop()
    unread = await ActivityEnvironment().run(analyze, inp)
    assert unread.weights is None and "HAProxy" in unread.weights_error  # the tick still stands


async def _eventually(
    check: Callable[[], Any], what: str, env: WorkflowEnvironment, seconds: int = 60
) -> Any:
    for _ in range(seconds * 4):
        value = await check()
        if value:
            return value
        await env.sleep(0.5)
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_a_rollout_re_applies_its_split_after_a_hand_edit_and_a_reload(
    reloadable: HAProxyInstance, demo: DemoPair
) -> None:
    spec = parse_spec(
        {
            "service": SERVICE,
            "version": "v2",
            "stable_version": "v1",
            "router": {**reloadable.router(), "timeout": "2s"},
            "steps": [{"set_weight": 10}, {"pause": "10m"}, {"set_weight": 100}],
            "analysis": {
                "interval": "2s",
                "metrics": [
                    {
                        "name": "smoke",
                        "provider": "http",
                        "url": reloadable.url + "/",
                        "requests": 2,
                        "min_success_ratio": 1,
                    }
                ],
            },
        }
    )
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=venv_binary("temporal-test-server"),
    )
    queue = f"tq-{uuid.uuid4()}"
    try:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[RolloutWorkflow],
            activities=[preflight, set_traffic, rollback_traffic, read_traffic, analyze],
        ):
            handle = await env.client.start_workflow(
                RolloutWorkflow.run,
                RolloutInput(spec=spec, spec_digest=spec.digest()),
                id=f"rollout-{uuid.uuid4()}",
                task_queue=queue,
                result_type=RolloutStatus,
            )

            async def status() -> RolloutStatus:
                return await handle.query("status", result_type=RolloutStatus)

            async def at_ten() -> bool:
                s = await status()
                return s.weights is not None and s.weights.canary == 10 and s.analysis.ticks >= 1

            await _eventually(at_ten, "the first step applied and measured", env)

            # 1. Someone sets weights by hand.
            reloadable.command(f"set weight {reloadable.backend}/canary 60")
            reloadable.command(f"set weight {reloadable.backend}/stable 40")

            async def re_applied(after: datetime | None) -> RolloutStatus | None:
                """The status once a drift that began after `after` was re-applied."""
                s = await status()
                d = s.drift
                if d is None or d.resolved_at is None or d.reapplied < 1:
                    return None
                return s if after is None or d.since > after else None

            first: RolloutStatus = await _eventually(lambda: re_applied(None), "hand edit re-applied", env)
            assert first.drift is not None and first.drift.found.canary == 60
            assert split(reloadable) == (90, 10)

            # 2. A real reload puts the config file's weights (stable 100, canary 0) back.
            reloadable.reload()
            assert split(reloadable) == (100, 0)
            second: RolloutStatus = await _eventually(
                lambda: re_applied(first.drift.since if first.drift else None), "the reload re-applied", env
            )
            assert second.drift is not None and second.drift.found.canary == 0
            assert split(reloadable) == (90, 10)
            assert second.weights is not None and second.weights.canary == 10

            await handle.signal("promote", OperatorInput(reason="test over", by="test"))
            result = await handle.result()
    finally:
        await env.shutdown()
    assert result.phase is Phase.PROMOTED
    assert split(reloadable) == (0, 100)
