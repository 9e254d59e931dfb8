"""`compare: stable` against the real thing: HAProxy's per-server counters and a real Prometheus."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sluice.activities.providers import provider_for
from sluice.activities.routers.haproxy import HAProxyTrafficRouter
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import HAProxyMetric, HAProxyRouter, MetricSpec, PrometheusMetric
from sluice.contracts.status import MetricVerdict, Verdict
from tests.integration.conftest import CANARY_VERSION, SERVICE, STABLE_VERSION, DemoPair
from tests.integration.test_providers import unused_router
from tests.support.haproxy import HAProxyInstance
from tests.support.load import send_requests
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
    return AnalyzeInput.model_validate({**base, **fields})


async def measure(router: HAProxyRouter, metric: MetricSpec, **fields: Any) -> MetricVerdict:
    return await provider_for(metric).measure(metric, tick(router, metric, **fields))


# --- HAProxy: both servers' counters ------------------------------------------------------

HAPROXY_COMPARE = HAProxyMetric.model_validate(
    {"name": "errors-vs-stable", "provider": "haproxy", "compare": "stable", "min_requests": 50}
)


async def run_through_haproxy(
    haproxy: HAProxyInstance, router: HAProxyRouter, requests: int
) -> MetricVerdict:
    state = await HAProxyTrafficRouter(router).set_weights(50)
    assert state.stable_counters is not None and state.canary_counters is not None
    await asyncio.to_thread(send_requests, haproxy.url + "/", requests)
    return await measure(
        router, HAPROXY_COMPARE, baseline=state.canary_counters, stable_baseline=state.stable_counters
    )


async def test_haproxy_compare_passes_a_canary_as_good_as_stable(
    haproxy: HAProxyInstance, router: HAProxyRouter, demo: DemoPair
) -> None:
    demo.stable.control(error_rate=0.05)
    demo.canary.control(error_rate=0.05)

    verdict = await run_through_haproxy(haproxy, router, 300)

    assert verdict.verdict is Verdict.PASS, verdict.detail
    c = verdict.comparison
    assert c is not None and c.kind == "errors" and c.events == ["5xx"]
    assert c.canary_requests + c.stable_requests == 300
    assert abs(c.canary_requests - c.stable_requests) <= 2  # roundrobin at 50/50
    assert c.e_value < c.threshold == 100
    assert "no evidence of a regression beyond 10%" in verdict.detail


async def test_haproxy_compare_fails_a_canary_worse_than_stable(
    haproxy: HAProxyInstance, router: HAProxyRouter, demo: DemoPair
) -> None:
    demo.stable.control(error_rate=0.02)
    demo.canary.control(error_rate=0.3)

    verdict = await run_through_haproxy(haproxy, router, 300)

    assert verdict.verdict is Verdict.FAIL, verdict.detail
    c = verdict.comparison
    assert c is not None and c.rejected and c.e_value >= 100
    assert c.canary_events[0] > c.stable_events[0]
    assert "worse than stable by more than 10%" in verdict.detail


async def test_haproxy_compare_with_too_little_traffic_is_inconclusive(
    haproxy: HAProxyInstance, router: HAProxyRouter, demo: DemoPair
) -> None:
    verdict = await run_through_haproxy(haproxy, router, 20)

    assert verdict.verdict is Verdict.INCONCLUSIVE, verdict.detail
    assert verdict.detail.startswith("not enough traffic: ")
    assert "stable requests, 50 each needed" in verdict.detail
    c = verdict.comparison
    assert c is not None and c.canary_requests + c.stable_requests == 20


# --- Prometheus: each version's counters since the start ------------------------------------


def compare_metric(prometheus: PrometheusInstance, **fields: Any) -> PrometheusMetric:
    base = {
        "name": "prom-vs-stable",
        "provider": "prometheus",
        "address": prometheus.url,
        "compare": "stable",
        "min_requests": 50,
    }
    return PrometheusMetric.model_validate({**base, **fields})


ERRORS = {
    "requests": 'http_requests_total{version="{{version}}"}',
    "errors": 'http_requests_total{version="{{version}}",code=~"5.."}',
}
LATENCY = {"histogram": 'http_request_duration_seconds_bucket{version="{{version}}"}'}


async def traffic(demo: DemoPair, stable: int, canary: int) -> datetime:
    """Send requests straight to each version; return when the analysis 'started' (just before)."""
    await asyncio.sleep(2.5)  # earlier tests' requests are scraped before the window starts
    since = datetime.now(UTC) - timedelta(seconds=1)
    await asyncio.gather(
        asyncio.to_thread(send_requests, demo.stable.url + "/", stable),
        asyncio.to_thread(send_requests, demo.canary.url + "/", canary),
    )
    await asyncio.sleep(2.5)  # two scrapes at 1 s: both versions' last counts are in Prometheus
    return since


async def test_prometheus_compare_passes_an_aa_canary(prometheus: PrometheusInstance, demo: DemoPair) -> None:
    demo.stable.control(error_rate=0.05)
    demo.canary.control(error_rate=0.05)
    since = await traffic(demo, 400, 200)

    verdict = await measure(unused_router(), compare_metric(prometheus, **ERRORS), since=since)

    assert verdict.verdict is Verdict.PASS, verdict.detail
    c = verdict.comparison
    assert c is not None and c.e_value < 100
    # Exact counts (each series' value now minus at `since`), not `increase`'s extrapolation,
    # which on a window of a few seconds added up to a third.
    assert (c.canary_requests, c.stable_requests) == (200, 400)


async def test_prometheus_compare_fails_a_canary_with_more_errors(
    prometheus: PrometheusInstance, demo: DemoPair
) -> None:
    demo.stable.control(error_rate=0.02)
    demo.canary.control(error_rate=0.3)
    since = await traffic(demo, 400, 200)

    verdict = await measure(unused_router(), compare_metric(prometheus, **ERRORS), since=since)

    assert verdict.verdict is Verdict.FAIL, verdict.detail
    assert verdict.detail.startswith("5xx: new ")
    assert verdict.counts["new_rate"] > verdict.counts["stable_rate"]


async def test_prometheus_compare_fails_a_slower_canary_on_its_histogram(
    prometheus: PrometheusInstance, demo: DemoPair
) -> None:
    demo.canary.control(latency_ms=30)  # stable answers in about a millisecond
    since = await traffic(demo, 300, 100)

    verdict = await measure(unused_router(), compare_metric(prometheus, **LATENCY), since=since)

    assert verdict.verdict is Verdict.FAIL, verdict.detail
    c = verdict.comparison
    assert c is not None and c.kind == "latency" and "slower than 0.025s" in c.events
    assert verdict.detail.startswith("slower than ")


async def test_prometheus_compare_passes_equal_latencies(
    prometheus: PrometheusInstance, demo: DemoPair
) -> None:
    since = await traffic(demo, 300, 100)

    verdict = await measure(unused_router(), compare_metric(prometheus, **LATENCY), since=since)

    assert verdict.verdict is Verdict.PASS, verdict.detail


async def test_prometheus_compare_without_series_is_inconclusive(prometheus: PrometheusInstance) -> None:
    metric = compare_metric(
        prometheus,
        requests='http_requests_total{version="{{version}}-nope"}',
        errors='http_requests_total{version="{{version}}-nope",code=~"5.."}',
    )

    verdict = await measure(unused_router(), metric, since=datetime.now(UTC) - timedelta(seconds=30))

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.detail.startswith("no data for the new version's requests")


async def test_prometheus_compare_with_a_bad_selector_says_what_prometheus_said(
    prometheus: PrometheusInstance,
) -> None:
    metric = compare_metric(prometheus, requests="sum(http_requests_total)", errors="x")

    verdict = await measure(unused_router(), metric, since=datetime.now(UTC) - timedelta(seconds=30))

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "HTTP 400, bad_data" in verdict.detail
