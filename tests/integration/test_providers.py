"""Metric providers against real HAProxy counters, the demo services and a real Prometheus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sluice.activities.haproxy_api import RuntimeAPI
from sluice.activities.providers import provider_for
from sluice.activities.routers import router_for
from sluice.contracts.calls import AnalyzeInput, ServerCounters
from sluice.contracts.spec import (
    HAProxyMetric,
    HAProxyRouter,
    HttpMetric,
    MetricSpec,
    PrometheusMetric,
)
from sluice.contracts.status import MetricVerdict, Verdict
from tests.integration.conftest import (
    CANARY_VERSION,
    SERVICE,
    STABLE_VERSION,
    DemoPair,
)
from tests.support.demo_service import start_demo_service
from tests.support.haproxy import HAProxyInstance, start_haproxy
from tests.support.load import send_requests
from tests.support.procs import free_port, wait_until
from tests.support.prometheus import PrometheusInstance

pytestmark = pytest.mark.integration


def tick(router: HAProxyRouter, metric: MetricSpec, **fields: Any) -> AnalyzeInput:
    base: dict[str, Any] = {
        "service": SERVICE,
        "version": CANARY_VERSION,
        "stable_version": STABLE_VERSION,
        "router": router,
        "metrics": [metric],
    }
    base.update(fields)
    return AnalyzeInput.model_validate(base)


async def measure(router: HAProxyRouter, metric: MetricSpec, **fields: Any) -> MetricVerdict:
    return await provider_for(metric).measure(metric, tick(router, metric, **fields))


def unused_router() -> HAProxyRouter:
    """A router the http and prometheus providers never touch."""
    return HAProxyRouter(
        type="haproxy",
        admin_socket="/nonexistent/haproxy.sock",
        backend="be_demo",
        stable_server="stable",
        canary_server="canary",
    )


# --- haproxy error_ratio ----------------------------------------------------------------

ERROR_RATIO = HAProxyMetric(name="canary-5xx", provider="haproxy", max=0.05, min_requests=20)


async def shift_and_send(
    haproxy: HAProxyInstance, router: HAProxyRouter, requests: int
) -> tuple[ServerCounters, int, int]:
    """Put 50% on the canary, send requests; return the baseline and the canary's answers."""
    state = await router_for(router).set_weights(50)
    assert state.canary_counters is not None
    sent = await asyncio.to_thread(send_requests, haproxy.url + "/", requests)
    return (
        state.canary_counters,
        sent.by_version[CANARY_VERSION],
        sent.by_version_status[(CANARY_VERSION, 500)],
    )


async def test_error_ratio_passes_a_healthy_canary(
    haproxy: HAProxyInstance, router: HAProxyRouter, demo: DemoPair
) -> None:
    baseline, answers, _ = await shift_and_send(haproxy, router, 100)

    verdict = await measure(router, ERROR_RATIO, baseline=baseline)

    assert verdict.verdict is Verdict.PASS, verdict.detail
    assert verdict.counts == {"requests": answers, "errors_5xx": 0}
    assert verdict.value == 0.0
    assert verdict.bound == "<= 0.05"
    assert verdict.detail == f"0 of {answers} responses were 5xx (0%), within the 5% limit"


async def test_error_ratio_fails_a_canary_answering_500(
    haproxy: HAProxyInstance, router: HAProxyRouter, demo: DemoPair
) -> None:
    demo.canary.control(error_rate=0.5)
    baseline, answers, errors_5xx = await shift_and_send(haproxy, router, 200)
    assert errors_5xx > 0.05 * answers  # the seeded demo really produced errors

    verdict = await measure(router, ERROR_RATIO, baseline=baseline)

    assert verdict.verdict is Verdict.FAIL, verdict.detail
    assert verdict.counts == {"requests": answers, "errors_5xx": errors_5xx}
    assert verdict.value == pytest.approx(errors_5xx / answers)
    assert verdict.detail.startswith(f"{errors_5xx} of {answers} responses were 5xx (")
    assert verdict.detail.endswith("above the 5% limit")


async def test_error_ratio_counts_only_since_the_baseline(
    haproxy: HAProxyInstance, router: HAProxyRouter, demo: DemoPair
) -> None:
    demo.canary.control(error_rate=1.0)
    await shift_and_send(haproxy, router, 40)  # 20 failures before the baseline
    demo.canary.control(error_rate=0.0)
    baseline = (await RuntimeAPI.all_of(router)[0].counters(router.canary_server))[router.canary_server]
    sent = await asyncio.to_thread(send_requests, haproxy.url + "/", 60)

    verdict = await measure(router, ERROR_RATIO, baseline=baseline)

    assert verdict.verdict is Verdict.PASS, verdict.detail
    assert verdict.counts == {"requests": sent.by_version[CANARY_VERSION], "errors_5xx": 0}


async def test_error_ratio_with_too_few_requests_is_inconclusive(
    haproxy: HAProxyInstance, router: HAProxyRouter, demo: DemoPair
) -> None:
    demo.canary.control(error_rate=1.0)
    baseline, answers, errors_5xx = await shift_and_send(haproxy, router, 10)
    assert 0 < answers < ERROR_RATIO.min_requests

    verdict = await measure(router, ERROR_RATIO, baseline=baseline)

    # Even 100% errors is not a verdict on 5 requests: too little data is never a pass or fail.
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.counts == {"requests": answers, "errors_5xx": errors_5xx}
    assert f"only {answers} responses" in verdict.detail
    assert "20 needed" in verdict.detail


async def test_error_ratio_after_a_counter_reset_counts_from_zero(
    haproxy: HAProxyInstance, router: HAProxyRouter, demo: DemoPair
) -> None:
    _, answers, _ = await shift_and_send(haproxy, router, 100)
    # A baseline above today's counters: HAProxy restarted since it was taken.
    stale = ServerCounters(responses=10_000, errors_5xx=3)

    verdict = await measure(router, ERROR_RATIO, baseline=stale)

    assert verdict.verdict is Verdict.PASS
    assert verdict.counts["requests"] == answers
    assert "reset" in verdict.detail


async def test_error_ratio_with_unreachable_router_is_inconclusive() -> None:
    verdict = await measure(unused_router(), ERROR_RATIO)

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "/nonexistent/haproxy.sock" in verdict.detail


# --- http smoke check -------------------------------------------------------------------


def http_metric(url: str, **fields: Any) -> HttpMetric:
    base: dict[str, Any] = {
        "name": "smoke",
        "provider": "http",
        "url": url,
        "requests": 10,
        "min_success_ratio": 0.9,
    }
    base.update(fields)
    return HttpMetric.model_validate(base)


async def test_http_passes_a_healthy_service(demo: DemoPair) -> None:
    verdict = await measure(unused_router(), http_metric(demo.canary.url + "/"))

    assert verdict.verdict is Verdict.PASS, verdict.detail
    assert verdict.value == 1.0
    assert verdict.counts == {"requests": 10, "succeeded": 10, "failed": 0}
    assert verdict.bound == ">= 0.9"


async def test_http_fails_a_service_answering_500(demo: DemoPair) -> None:
    demo.canary.control(error_rate=1.0)

    verdict = await measure(unused_router(), http_metric(demo.canary.url + "/"))

    assert verdict.verdict is Verdict.FAIL
    assert verdict.value == 0.0
    assert "10× HTTP 500" in verdict.detail


async def test_http_fails_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"

    verdict = await measure(unused_router(), http_metric(url, requests=3))

    assert verdict.verdict is Verdict.FAIL  # the service is down: that is a failure, not a shrug
    assert "3× connection refused" in verdict.detail


async def test_http_counts_slow_answers_as_failures(demo: DemoPair) -> None:
    demo.canary.control(latency_ms=300)

    verdict = await measure(unused_router(), http_metric(demo.canary.url + "/", requests=3, timeout="100ms"))

    assert verdict.verdict is Verdict.FAIL
    assert "3× timeout" in verdict.detail


# --- prometheus -------------------------------------------------------------------------

ERROR_RATE_QUERY = (
    'sum(http_requests_total{version="{{version}}",code="500"})'
    ' / sum(http_requests_total{version="{{version}}"})'
)


def prom_metric(prom: PrometheusInstance | str, query: str, **fields: Any) -> PrometheusMetric:
    address = prom if isinstance(prom, str) else prom.url
    base: dict[str, Any] = {
        "name": "prom",
        "provider": "prometheus",
        "address": address,
        "query": query,
        "max": 0.05,
    }
    base.update(fields)
    return PrometheusMetric.model_validate(base)


def scraped_total(prom: PrometheusInstance, version: str) -> float:
    result = prom.query(f'sum(http_requests_total{{version="{version}"}})')
    data = result["data"]
    assert isinstance(data, dict)
    samples = data["result"]
    return float(samples[0]["value"][1]) if samples else 0.0


async def send_direct_and_wait_for_scrape(
    prom: PrometheusInstance, demo: DemoPair, version: str, n: int
) -> None:
    """Send `n` requests straight to one version and wait until Prometheus has scraped them."""
    service = demo.canary if version == CANARY_VERSION else demo.stable
    before = scraped_total(prom, version)
    await asyncio.to_thread(send_requests, service.url + "/", n)
    await asyncio.to_thread(
        wait_until,
        lambda: scraped_total(prom, version) >= before + n,
        15,
        what=f"Prometheus scraping {n} more {version} requests",
    )


async def test_prometheus_passes_within_bounds(prometheus: PrometheusInstance, demo: DemoPair) -> None:
    await send_direct_and_wait_for_scrape(prometheus, demo, STABLE_VERSION, 20)
    metric = prom_metric(prometheus, ERROR_RATE_QUERY.replace("{{version}}", "{{stable_version}}"))

    verdict = await measure(unused_router(), metric)

    assert verdict.verdict is Verdict.PASS, verdict.detail
    assert verdict.value == 0.0
    assert verdict.bound == "<= 0.05"


async def test_prometheus_fails_above_max(prometheus: PrometheusInstance, demo: DemoPair) -> None:
    demo.canary.control(error_rate=1.0)
    await send_direct_and_wait_for_scrape(prometheus, demo, CANARY_VERSION, 40)

    verdict = await measure(unused_router(), prom_metric(prometheus, ERROR_RATE_QUERY))

    assert verdict.verdict is Verdict.FAIL, verdict.detail
    assert verdict.value is not None and verdict.value > 0.05
    assert "above the maximum 0.05" in verdict.detail


async def test_prometheus_fails_below_min(prometheus: PrometheusInstance, demo: DemoPair) -> None:
    metric = prom_metric(prometheus, "scalar(count(up == 1))", max=None, min=3)

    verdict = await measure(unused_router(), metric)

    assert verdict.verdict is Verdict.FAIL, verdict.detail
    assert verdict.value == 2.0
    assert verdict.bound == ">= 3"


@pytest.mark.parametrize(
    "query",
    [
        'sum(http_requests_total{version="no-such-version"})',
        "vector(0) / vector(0)",  # NaN, like an error ratio over zero requests
    ],
    ids=["empty", "nan"],
)
async def test_prometheus_without_data_is_inconclusive(prometheus: PrometheusInstance, query: str) -> None:
    verdict = await measure(unused_router(), prom_metric(prometheus, query))

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.detail.startswith("no data")


async def test_prometheus_bad_query_is_inconclusive_with_its_message(
    prometheus: PrometheusInstance,
) -> None:
    verdict = await measure(unused_router(), prom_metric(prometheus, "sum(http_requests_total"))

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "HTTP 400, bad_data" in verdict.detail
    assert "parse error" in verdict.detail  # Prometheus' own words


async def test_prometheus_several_series_is_inconclusive(prometheus: PrometheusInstance) -> None:
    verdict = await measure(unused_router(), prom_metric(prometheus, 'up{job="demo"}'))

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "returned 2 series" in verdict.detail


async def test_prometheus_unreachable_is_inconclusive() -> None:
    address = f"http://127.0.0.1:{free_port()}"

    verdict = await measure(unused_router(), prom_metric(address, "vector(1)"))

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert address in verdict.detail
    assert "unreachable" in verdict.detail


async def test_prometheus_missing_stable_version_is_inconclusive(
    prometheus: PrometheusInstance,
) -> None:
    metric = prom_metric(prometheus, 'sum(up{version="{{stable_version}}"})')

    verdict = await measure(unused_router(), metric, stable_version=None)

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "stable_version" in verdict.detail


async def test_error_ratio_fails_a_canary_that_is_down(
    demo: DemoPair, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A crashed canary answers nothing, so its hrsp_* counters stay at zero. The localstack
    # config has `option redispatch 1`: HAProxy sends those requests to stable instead and
    # counts them in the canary's `wredis`, which the router folds into errors_5xx.
    workdir = tmp_path_factory.mktemp("down")
    canary_port = free_port()
    canary = start_demo_service(canary_port, CANARY_VERSION, workdir)
    haproxy = start_haproxy(
        workdir,
        service=SERVICE,
        frontend_port=free_port(),
        stable_addr=demo.stable.addr,
        canary_addr=f"127.0.0.1:{canary_port}",
    )
    try:
        router = HAProxyRouter(
            type="haproxy",
            admin_socket=str(haproxy.admin_socket),
            backend=haproxy.backend,
            stable_server="stable",
            canary_server="canary",
        )
        state = await router_for(router).set_weights(50)
        canary.stop()
        sent = await asyncio.to_thread(send_requests, haproxy.url + "/", 60)
        assert sent.by_version_status == {(STABLE_VERSION, 200): 60}  # users saw no error

        verdict = await measure(router, ERROR_RATIO, baseline=state.canary_counters)
    finally:
        haproxy.stop()
        canary.stop()

    assert verdict.verdict is Verdict.FAIL, verdict.detail
    redispatched = verdict.counts["requests"]
    # Not 30: each redispatch also moves roundrobin on, so most requests try the canary first.
    assert ERROR_RATIO.min_requests <= redispatched <= 60
    assert verdict.counts == {"requests": redispatched, "errors_5xx": redispatched}
