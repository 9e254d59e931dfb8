"""The cloudwatch and cloudwatch_alarm providers against moto_server: data put in drives the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sluice.activities.providers import provider_for
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import CloudWatchAlarmGate, CloudWatchMetric
from sluice.contracts.status import Verdict
from tests.aws.resources import aws
from tests.support.moto import MotoServer

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


def put_for(version: str, **counts: float) -> None:
    """Put one count per metric name for `version`'s series (dimension Version)."""
    aws("cloudwatch").put_metric_data(
        Namespace="Sluice/Test",
        MetricData=[
            {"MetricName": name, "Dimensions": [{"Name": "Version", "Value": version}], "Value": value}
            for name, value in counts.items()
        ],
    )


def compare_metric(**over: Any) -> CloudWatchMetric:
    return CloudWatchMetric.model_validate(
        {
            "name": "errors-vs-stable",
            "provider": "cloudwatch",
            "compare": "stable",
            "errors": {**LATENCY, "metric_name": "Errors", "stat": "Sum"},
            "requests": {**LATENCY, "metric_name": "Requests", "stat": "Sum"},
            "stable_dimensions": {"Version": "v1"},
            "min_requests": 100,
            **over,
        }
    )


async def test_compare_stable_passes_when_both_versions_err_alike(aws_env: MotoServer) -> None:
    metric = compare_metric()
    put_for("v2", Requests=1000, Errors=10)
    put_for("v1", Requests=9000, Errors=90)  # the same 1% on stable: no regression
    since = datetime.now(UTC) - timedelta(minutes=1)
    result = await provider_for(metric).measure(metric, tick(since=since, stable_version="v1"))
    assert result.verdict is Verdict.PASS, result.detail
    assert result.comparison is not None and not result.comparison.rejected
    assert result.counts["new_requests"] == 1000 and result.counts["stable_requests"] == 9000
    assert result.counts["new_events"] == 10 and result.counts["stable_events"] == 90
    assert "no evidence of a regression" in result.detail


async def test_compare_stable_fails_a_worse_new_version(aws_env: MotoServer) -> None:
    metric = compare_metric()
    put_for("v2", Requests=1000, Errors=60)  # 6% against stable's 1%
    put_for("v1", Requests=9000, Errors=90)
    since = datetime.now(UTC) - timedelta(minutes=1)
    result = await provider_for(metric).measure(metric, tick(since=since, stable_version="v1"))
    assert result.verdict is Verdict.FAIL, result.detail
    assert "worse than stable" in result.detail and result.value is not None and result.value >= 100


async def test_compare_stable_is_inconclusive_on_little_traffic_then_passes_with_more(
    aws_env: MotoServer,
) -> None:
    metric = compare_metric()
    since = datetime.now(UTC) - timedelta(minutes=1)
    put_for("v2", Requests=30, Errors=0)
    put_for("v1", Requests=300, Errors=1)
    first = await provider_for(metric).measure(metric, tick(since=since, stable_version="v1"))
    assert first.verdict is Verdict.INCONCLUSIVE and "not enough traffic" in first.detail
    # The next tick carries the first one's state and counts on from it.
    put_for("v2", Requests=200, Errors=2)
    put_for("v1", Requests=2000, Errors=20)
    second = await provider_for(metric).measure(
        metric, tick(since=since, stable_version="v1", previous=[first.model_dump()])
    )
    assert second.verdict is Verdict.PASS, second.detail
    assert second.counts["new_requests"] == 230 and second.counts["stable_requests"] == 2300
