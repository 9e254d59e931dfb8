"""The traffic router interface: one small class per router type, chosen by the spec's `type`."""

from __future__ import annotations

from typing import Protocol

from sluice.contracts.calls import ServerCounters, TrafficState


class TrafficRouter(Protocol):
    """Splits requests between the stable and the new version. Every method is idempotent.

    Errors are raised as `temporalio.exceptions.ApplicationError` with a type from
    `contracts.errors` so the workflow and the CLI can tell retryable from fatal.
    """

    async def preflight(self) -> TrafficState:
        """Check the router answers and both servers exist; return the current split. Changes nothing."""
        ...

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Send `canary_weight` percent to the new version and the rest to stable, then read back.

        Returns the split as read back, with the new version's counters as they were just
        before the change. Raises TRAFFIC_NOT_APPLIED if the read-back differs.
        """
        ...

    async def read_weights(self) -> TrafficState:
        """The current split and the new version's counters, without changing anything."""
        ...

    async def canary_counters(self) -> ServerCounters:
        """Cumulative response counters of the new version's server."""
        ...
