"""The cloudwatch and cloudwatch_alarm providers against moto_server: data put in drives the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.providers import provider_for
from contracts.calls import AnalyzeInput
from contracts.spec import CloudWatchAlarmGate, CloudWatchMetric
from contracts.status import Verdict
from localstack.moto import MotoServer
from tests.aws.resources import aws

pytestmark = pytest.mark.integration

LATENCY = {
    "namespace": "Sluice/Test",
    "metric_name": "Latency",
    "dimensions": {"Version": "v2"},
    "stat": "Average",
}


def tick(**over: Any) -> AnalyzeInput:
    router = {
        "type": "route53",
        "hosted_zone_id": "Z1",
        "record_name": "a.example.com",
        "stable_set_identifier": "a",
        "canary_set_identifier": "b",
    }
    data = {"service": "checkout", "version": "v2", "router": router, "metrics": [], **over}
    return AnalyzeInput.model_validate(data)


def put(name: str, *values: float) -> None:
    aws("cloudwatch").put_metric_data(
        Namespace="Sluice/Test",
        MetricData=[
            {"MetricName": name, "Dimensions": [{"Name": "Version", "Value": "v2"}], "Value": v}
            for v in values
        ],
    )


async def test_value_within_and_beyond_bounds(aws_env: MotoServer) -> None:
    metric = CloudWatchMetric(name="p-latency", provider="cloudwatch", value=LATENCY, max=0.5)  # type: ignore[arg-type]
    first = await provider_for(metric).measure(metric, tick())
    assert first.verdict is Verdict.INCONCLUSIVE and "no data" in first.detail
    put("Latency", 0.2, 0.3)
    ok = await provider_for(metric).measure(metric, tick())
    assert ok.verdict is Verdict.PASS and ok.value == pytest.approx(0.25)
    put("Latency", 2.0, 2.0)
    bad = await provider_for(metric).measure(metric, tick())
    assert bad.verdict is Verdict.FAIL and "above the maximum 0.5" in bad.detail


async def test_ratio_sums_the_window_and_needs_min_requests(aws_env: MotoServer) -> None:
    metric = CloudWatchMetric.model_validate(
        {
            "name": "errors",
            "provider": "cloudwatch",
            "errors": {**LATENCY, "metric_name": "Errors", "stat": "Sum"},
            "requests": {**LATENCY, "metric_name": "Requests", "stat": "Sum"},
            "max": 0.1,
            "min_requests": 10,
        }
    )
    put("Errors", 1)
    put("Requests", 5)
    few = await provider_for(metric).measure(metric, tick(since=datetime.now(UTC) - timedelta(minutes=1)))
    assert few.verdict is Verdict.INCONCLUSIVE and "only 5 requests" in few.detail
    put("Requests", 15)
    enough = await provider_for(metric).measure(metric, tick(since=datetime.now(UTC) - timedelta(minutes=1)))
    assert enough.verdict is Verdict.PASS and enough.counts == {"requests": 20, "errors": 1}


async def test_alarm_gate_states(aws_env: MotoServer) -> None:
    cloudwatch = aws("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="checkout-5xx",
        Namespace="Sluice/Test",
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName="checkout-5xx", StateValue="INSUFFICIENT_DATA", StateReason="new")
    gate = CloudWatchAlarmGate(name="alarms", provider="cloudwatch_alarm", alarms=["checkout-5xx"])
    strict = gate.model_copy(update={"on_insufficient_data": "inconclusive"})
    typo = gate.model_copy(update={"alarms": ["checkout-5xx", "checkout-5XX"]})
    assert (await provider_for(gate).measure(gate, tick())).verdict is Verdict.PASS  # INSUFFICIENT_DATA
    assert (await provider_for(strict).measure(strict, tick())).verdict is Verdict.INCONCLUSIVE
    missing = await provider_for(typo).measure(typo, tick())
    assert missing.verdict is Verdict.INCONCLUSIVE and "no such alarm: checkout-5XX" in missing.detail
    cloudwatch.set_alarm_state(AlarmName="checkout-5xx", StateValue="ALARM", StateReason="too many")
    firing = await provider_for(gate).measure(gate, tick())
    assert firing.verdict is Verdict.FAIL and firing.detail == "in ALARM: checkout-5xx: too many"
