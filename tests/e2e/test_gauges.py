"""Live gauges of a rollout's weight and phase, scraped from the worker by a real Prometheus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Stack
from tests.e2e.test_observability import _value
from tests.e2e.test_rollouts import start, wait_status
from tests.support.procs import free_port, wait_until
from tests.support.prometheus import start_prometheus
from tests.support.temporal import start_worker

pytestmark = pytest.mark.integration


def test_weight_and_phase_gauges_follow_the_rollout(stack: Stack, tmp_path: Path) -> None:
    metrics_at = f"127.0.0.1:{free_port()}"
    worker = start_worker(
        stack.server,
        tmp_path / "worker.log",
        {"SLUICE_METRICS_ADDRESS": metrics_at, "SLUICE_GAUGE_INTERVAL": "1s"},
    )
    prometheus = start_prometheus(tmp_path / "prometheus", port=free_port(), targets=[metrics_at])
    labels = f'sluice_service="{stack.service}",sluice_ring=""'

    def equals(promql: str, want: float) -> None:
        wait_until(lambda: _value(prometheus.query(promql)) == want, 40, 0.5, f"{promql} == {want}")

    try:
        spec = stack.spec([{"set_weight": 25}, {"pause": {}}, {"set_weight": 100}])
        start(stack, spec)
        wait_status(stack, lambda s: s["phase"] == "paused")
        equals(f"max(sluice_rollout_weight{{{labels}}})", 25)
        equals(f'max(sluice_rollout_phase{{{labels},sluice_phase="paused"}})', 1)
        equals(f'max(sluice_rollout_phase{{{labels},sluice_phase="progressing"}})', 0)
        equals(f'max(sluice_rollout_running{{sluice_service="{stack.service}"}})', 1)
        # Prometheus Operator's target labels stay free: ours are all prefixed (an empty
        # `sluice_ring` is no label at all to Prometheus).
        series = prometheus.query(f"sluice_rollout_weight{{{labels}}}")["data"]
        assert isinstance(series, dict)
        names = set(series["result"][0]["metric"])
        assert "sluice_service" in names and not names & {"service", "namespace", "pod"}, names

        # The Grafana dashboard's queries run against these very series.
        dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$service", stack.service)
                answer = prometheus.query(expr)
                assert answer["status"] == "success", (panel["title"], answer)
                if panel["title"] in ("Rollouts running", "Traffic on the new version", "Phase"):
                    data = answer["data"]
                    assert isinstance(data, dict) and data["result"], (panel["title"], expr)

        assert stack.sluice("abort", stack.service, "--reason", "gauge test", "--by", "alice").returncode == 0
        wait_status(stack, lambda s: s["phase"] == "aborted")
        equals(f"max(sluice_rollout_weight{{{labels}}})", 0)
        equals(f'max(sluice_rollout_phase{{{labels},sluice_phase="aborted"}})', 1)
        equals(f'max(sluice_rollout_phase{{{labels},sluice_phase="paused"}})', 0)
        equals(f'max(sluice_rollout_running{{sluice_service="{stack.service}"}})', 0)
    finally:
        prometheus.stop()
        worker.stop()
