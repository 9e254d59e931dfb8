"""One router, several real HAProxy instances (an HA pair): every change on each, one of them failing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from sluice.activities.providers import provider_for
from sluice.activities.routers import router_for
from sluice.contracts import errors
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import HAProxyMetric, HAProxyRouter
from sluice.contracts.status import MetricVerdict, Verdict
from tests.integration.conftest import CANARY_VERSION, SERVICE, STABLE_VERSION, DemoPair
from tests.support.haproxy import HAProxyInstance, start_haproxy
from tests.support.load import send_requests
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

ERROR_RATIO = HAProxyMetric(name="canary-5xx", provider="haproxy", max=0.05, min_requests=20)


def start(demo: DemoPair, workdir: Any) -> HAProxyInstance:
    """An HAProxy in front of the demo pair, its runtime API at `workdir/haproxy.sock`."""
    return start_haproxy(
        workdir,
        service=SERVICE,
        frontend_port=free_port(),
        stable_addr=demo.stable.addr,
        canary_addr=demo.canary.addr,
    )


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair) -> Iterator[list[HAProxyInstance]]:
    """Two HAProxy instances with the same backend; a test may stop and restart the second."""
    instances = [start(demo, tmp_path_factory.mktemp("hap")) for _ in range(2)]
    yield instances
    for instance in instances:
        instance.stop()


def spec(instances: list[HAProxyInstance]) -> HAProxyRouter:
    return HAProxyRouter.model_validate(
        {**instances[0].router(), "admin_socket": [str(i.admin_socket) for i in instances], "timeout": "2s"}
    )


def weights(instance: HAProxyInstance) -> tuple[int, int]:
    stable = instance.command(f"get weight {instance.backend}/stable").split()[0]
    canary = instance.command(f"get weight {instance.backend}/canary").split()[0]
    return int(stable), int(canary)


def restart(demo: DemoPair, instance: HAProxyInstance) -> HAProxyInstance:
    """Stop `instance` and start a new HAProxy on the same socket: counters and weights from scratch."""
    instance.stop()
    return start(demo, instance.config_path.parent)


async def measure(router: HAProxyRouter, **fields: Any) -> MetricVerdict:
    tick = AnalyzeInput.model_validate(
        {"service": SERVICE, "version": CANARY_VERSION, "router": router, "metrics": [ERROR_RATIO], **fields}
    )
    return await provider_for(ERROR_RATIO).measure(ERROR_RATIO, tick)


async def test_every_change_is_applied_to_and_read_back_from_each_instance(
    pair: list[HAProxyInstance], demo: DemoPair
) -> None:
    router = router_for(spec(pair))

    state = await router.preflight()
    assert all(str(i.admin_socket) in state.detail for i in pair)
    assert state.canary_counters is not None and state.canary_counters.responses == 0

    state = await router.set_weights(30)
    assert (state.stable_weight, state.canary_weight) == (70, 30)
    assert [weights(i) for i in pair] == [(70, 30), (70, 30)]
    assert all(str(i.admin_socket) in state.detail for i in pair)
    sent = [await asyncio.to_thread(send_requests, i.url + "/", 100) for i in pair]
    assert all(abs(s.by_version[CANARY_VERSION] - 30) <= 2 for s in sent), sent

    state = await router.set_weights(0)
    assert [weights(i) for i in pair] == [(100, 0), (100, 0)]
    # Counters come back summed over the instances: each counts only what it proxied.
    assert state.canary_counters is not None and state.stable_counters is not None
    assert state.canary_counters.responses == sum(s.by_version[CANARY_VERSION] for s in sent)
    assert state.stable_counters.responses == sum(s.by_version[STABLE_VERSION] for s in sent)


async def test_preflight_checks_every_instance(pair: list[HAProxyInstance]) -> None:
    first, second = pair
    second.command(f"set weight {second.backend}/canary 10")

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec(pair)).preflight()

    assert caught.value.type == errors.UNEXPECTED_SPLIT and caught.value.non_retryable
    assert str(second.admin_socket) in caught.value.message
    assert str(first.admin_socket) not in caught.value.message
    assert [weights(i) for i in pair] == [(100, 0), (100, 10)]  # nothing touched

    second.stop()
    with pytest.raises(ApplicationError) as caught:
        await router_for(spec(pair)).preflight()
    assert caught.value.type == errors.ROUTER_UNREACHABLE
    assert str(second.admin_socket) in caught.value.message


async def test_with_one_instance_down_the_others_change_and_the_retry_finishes(
    pair: list[HAProxyInstance], demo: DemoPair
) -> None:
    first, second = pair
    router = router_for(spec(pair))
    await router.set_weights(50)
    second.stop()

    # A rollback while one instance is down: retryable, and the canary is out where it can be.
    with pytest.raises(ApplicationError) as caught:
        await router.set_weights(0)
    assert caught.value.type == errors.ROUTER_UNREACHABLE and not caught.value.non_retryable
    assert caught.value.message.startswith("1 of 2 HAProxy instances failed")
    assert str(second.admin_socket) in caught.value.message
    assert weights(first) == (100, 0)
    counts = await asyncio.to_thread(send_requests, first.url + "/", 20)
    assert counts.by_version == {STABLE_VERSION: 20}

    # The instance comes back (as a restarted HAProxy would); the activity's retry finishes the job.
    pair[1] = restart(demo, second)
    pair[1].command(f"set weight {second.backend}/canary 50")
    state = await router.set_weights(0)
    assert (state.stable_weight, state.canary_weight) == (100, 0)
    assert [weights(i) for i in pair] == [(100, 0), (100, 0)]


async def test_a_refusal_by_one_instance_is_not_retried_and_the_others_change(
    pair: list[HAProxyInstance], demo: DemoPair, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("hap")
    operator = start_haproxy(
        workdir,
        service=SERVICE,
        frontend_port=free_port(),
        stable_addr=demo.stable.addr,
        canary_addr=demo.canary.addr,
        socket_level="operator",  # may read, may not set weights
    )
    try:
        with pytest.raises(ApplicationError) as caught:
            await router_for(spec([pair[0], operator])).set_weights(10)
    finally:
        operator.stop()

    assert caught.value.type == errors.ROUTER_REJECTED and caught.value.non_retryable
    assert caught.value.message.startswith("1 of 2 HAProxy instances failed")
    assert "Permission denied" in caught.value.message
    assert weights(pair[0]) == (90, 10)


async def test_error_ratio_counts_the_canary_on_every_instance(
    pair: list[HAProxyInstance], demo: DemoPair
) -> None:
    router = spec(pair)
    state = await router_for(router).set_weights(50)
    demo.canary.control(error_rate=1.0)
    sent = [await asyncio.to_thread(send_requests, i.url + "/", 40) for i in pair]
    answers = sum(s.by_version[CANARY_VERSION] for s in sent)

    verdict = await measure(router, baseline=state.canary_counters, since=datetime.now(UTC))

    assert verdict.verdict is Verdict.FAIL, verdict.detail
    assert verdict.counts == {"requests": answers, "errors_5xx": answers}


async def test_error_ratio_after_one_instance_restarted_counts_only_that_one(
    pair: list[HAProxyInstance], demo: DemoPair
) -> None:
    router = spec(pair)
    state = await router_for(router).set_weights(50)
    since = datetime.now(UTC)
    demo.canary.control(error_rate=1.0)
    await asyncio.to_thread(send_requests, pair[0].url + "/", 40)  # failures the restart will hide
    await asyncio.sleep(3)  # the restarted instance's uptime must be clearly shorter than the analysis
    pair[1] = restart(demo, pair[1])
    pair[1].command(f"set weight {pair[1].backend}/stable 50")
    pair[1].command(f"set weight {pair[1].backend}/canary 50")
    demo.canary.control(error_rate=0.0)
    sent = await asyncio.to_thread(send_requests, pair[1].url + "/", 60)

    verdict = await measure(router, baseline=state.canary_counters, since=since)

    # The summed baseline cannot be split again: only the restarted instance is counted, from zero.
    assert verdict.verdict is Verdict.PASS, verdict.detail
    assert verdict.counts == {"requests": sent.by_version[CANARY_VERSION], "errors_5xx": 0}
    assert f"HAProxy at {pair[1].admin_socket} backend {pair[1].backend} restarted" in verdict.detail


async def test_error_ratio_after_a_reload_of_a_single_instance_counts_since_the_reload(
    pair: list[HAProxyInstance], demo: DemoPair
) -> None:
    router = spec(pair[:1])
    await router_for(router).set_weights(50)
    await asyncio.to_thread(send_requests, pair[0].url + "/", 40)
    state = await router_for(router).set_weights(50)  # a baseline with ~20 canary responses in it
    since = datetime.now(UTC)
    await asyncio.sleep(3)
    pair[0] = restart(demo, pair[0])
    pair[0].command(f"set weight {pair[0].backend}/stable 50")
    pair[0].command(f"set weight {pair[0].backend}/canary 50")
    demo.canary.control(error_rate=1.0)
    sent = await asyncio.to_thread(send_requests, pair[0].url + "/", 100)
    assert state.canary_counters is not None
    assert sent.by_version[CANARY_VERSION] > state.canary_counters.responses  # counters above the baseline

    verdict = await measure(router, baseline=state.canary_counters, since=since)

    # Counted since the reload, not reload-to-now minus a baseline from before it.
    answers = sent.by_version[CANARY_VERSION]
    assert verdict.counts == {"requests": answers, "errors_5xx": answers}
    assert "counters were reset" in verdict.detail


async def test_a_read_shows_each_instance_so_one_reset_instance_is_seen(
    pair: list[HAProxyInstance], demo: DemoPair
) -> None:
    router = router_for(spec(pair))
    await router.set_weights(10)
    pair[1] = restart(demo, pair[1])  # its weights are the config file's again: stable 100
    state = await router.read_weights()
    # The split reported is the one giving the canary the most; each instance's is kept too,
    # so the workflow sees that the second one drifted.
    assert (state.stable_weight, state.canary_weight) == (90, 10)
    assert [(w.stable, w.canary) for w in state.instances] == [(90, 10), (100, 0)]
