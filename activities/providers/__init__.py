"""Metric providers. `provider_for(metric)` returns the implementation for `metric.provider`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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

PROVIDERS: Mapping[type[Any], Callable[[], MetricProvider]] = {
    HAProxyMetric: HAProxyErrorRatio,
    HttpMetric: HttpSmokeCheck,
    PrometheusMetric: PrometheusQuery,
    CloudWatchMetric: CloudWatchStats,
    CloudWatchAlarmGate: CloudWatchAlarms,
}
"""Each metric spec model and the provider that measures it; a new provider adds a module and a line."""


def provider_for(metric: MetricSpec) -> MetricProvider:
    """The provider for `metric` (the spec is validated, so every type has one)."""
    return PROVIDERS[type(metric)]()


__all__ = ["PROVIDERS", "MetricProvider", "provider_for"]
