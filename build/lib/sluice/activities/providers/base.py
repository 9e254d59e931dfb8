"""The metric provider interface: one small module per `provider:` in the spec."""

from __future__ import annotations

from typing import Protocol

from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import MetricSpec
from sluice.contracts.status import MetricVerdict


class MetricProvider(Protocol):
    """Measures one metric and judges it against its bounds.

    Never raises for a measurement problem (server down, bad query, no data): that is an
    `inconclusive` verdict whose `detail` says what went wrong. Too little data is never a pass.
    """

    async def measure(self, metric: MetricSpec, tick: AnalyzeInput) -> MetricVerdict:
        """Measure `metric` now, in the context of the rollout described by `tick`."""
        ...
