"""Metric providers. `provider_for(metric)` returns the implementation for `metric.provider`."""

from __future__ import annotations

from sluice.activities.providers.base import MetricProvider
from sluice.activities.providers.cloudwatch import CloudWatchAlarms, CloudWatchStats
from sluice.activities.providers.haproxy import HAProxyErrorRatio
from sluice.activities.providers.http import HttpSmokeCheck
from sluice.activities.providers.prometheus import PrometheusQuery
from sluice.contracts.spec import (
    CloudWatchAlarmGate,
    CloudWatchMetric,
    HAProxyMetric,
    HttpMetric,
    MetricSpec,
    PrometheusMetric,
)


def provider_for(metric: MetricSpec) -> MetricProvider:
    """The provider for `metric`; a new provider adds a module and a branch here, nothing else."""
    if isinstance(metric, HAProxyMetric):
        return HAProxyErrorRatio()
    if isinstance(metric, HttpMetric):
        return HttpSmokeCheck()
    if isinstance(metric, PrometheusMetric):
        return PrometheusQuery()
    if isinstance(metric, CloudWatchMetric):
        return CloudWatchStats()
    if isinstance(metric, CloudWatchAlarmGate):
        return CloudWatchAlarms()
    raise TypeError(f"no provider for {type(metric).__name__}")  # unreachable: spec is validated


__all__ = ["MetricProvider", "provider_for"]
