"""`compare: stable` rollouts on the real stack: HAProxy, a real Prometheus scraping both demo
versions, the dev server, a worker process and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_rollouts import status
from tests.support.demo_service import control
from tests.support.load import LoadGenerator
from tests.support.procs import ManagedProcess, free_port
from tests.support.prometheus import PrometheusInstance, start_prometheus

pytestmark = pytest.mark.integration


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[PrometheusInstance]:
    targets = [url.removeprefix("http://") for url in (stack.stable_url, stack.canary_url)]
    instance = start_prometheus(tmp_path / "prometheus", port=free_port(), targets=targets)
    instance.wait_for_sample('up{job="demo"} == 1')
    yield instance
    instance.stop()


def haproxy_compare() -> dict[str, Any]:
    return {"name": "haproxy-vs-stable", "provider": "haproxy", "compare": "stable", "min_requests": 50}


def prometheus_compare(prometheus: PrometheusInstance) -> dict[str, Any]:
    return {
        "name": "prometheus-vs-stable",
        "provider": "prometheus",
        "address": prometheus.url,
        "compare": "stable",
        "requests": 'http_requests_total{version="{{version}}"}',
        "errors": 'http_requests_total{version="{{version}}",code=~"5.."}',
        "min_requests": 50,
    }


def test_a_canary_as_good_as_stable_is_promoted(
    stack: Stack, prometheus: PrometheusInstance, worker: ManagedProcess
) -> None:
    control(stack.stable_url, error_rate=0.02)
    stack.canary_errors(0.02)  # the same error rate on both versions
    spec = stack.spec(
        [{"set_weight": 30}, {"pause": "8s"}, {"set_weight": 100}],
        interval="1s",
        inconclusive_limit=30,
        # A 50% tolerance keeps the chance of a false rollback (at most alpha = 1% over both
        # metrics at 0% tolerance) far below that, so this test does not flake on an unlucky draw.
        metrics=[
            {**haproxy_compare(), "tolerance": 0.5},
            {**prometheus_compare(prometheus), "tolerance": 0.5},
        ],
    )
    with LoadGenerator(stack.haproxy.url, rate=40):
        done = stack.sluice("start", "-f", str(spec), "--wait", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    final = status(stack)
    assert final["phase"] == "promoted" and final["weights"] == {"stable": 0, "canary": 100}
    verdicts = {v["metric"]: v for v in final["verdicts"]}
    for name in ("haproxy-vs-stable", "prometheus-vs-stable"):
        v = verdicts[name]
        assert v["verdict"] == "pass", v
        assert v["comparison"]["canary_requests"] >= 50 and v["comparison"]["stable_requests"] >= 50
        # alpha 0.01 is split over the two compare metrics: each rejects at 2/0.01
        assert v["comparison"]["e_value"] < v["comparison"]["threshold"] == 200
        assert "no evidence of a regression beyond 50%" in v["detail"]


@pytest.mark.parametrize("source", ["haproxy", "prometheus"])
def test_a_canary_worse_than_stable_is_rolled_back(
    source: str, stack: Stack, prometheus: PrometheusInstance, worker: ManagedProcess
) -> None:
    control(stack.stable_url, error_rate=0.01)
    stack.canary_errors(0.25)
    metric = haproxy_compare() if source == "haproxy" else prometheus_compare(prometheus)
    spec = stack.spec(
        [{"set_weight": 30}, {"pause": "2m"}, {"set_weight": 100}],
        interval="1s",
        inconclusive_limit=60,
        metrics=[metric],
    )
    with LoadGenerator(stack.haproxy.url, rate=40):
        done = stack.sluice("start", "-f", str(spec), "--wait", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    final = status(stack)
    assert final["phase"] == "rolled_back" and final["weights"] == {"stable": 100, "canary": 0}
    assert metric["name"] in final["message"]
    (verdict,) = final["verdicts"]
    assert verdict["verdict"] == "fail" and "worse than stable by more than 10%" in verdict["detail"]
    assert verdict["comparison"]["rejected"] and verdict["comparison"]["e_value"] >= 100
    assert final["analysis"]["started_at"] is not None
