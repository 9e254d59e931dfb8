"""The traffic router interface: one small class per router type, chosen by the spec's `type`."""

from __future__ import annotations

from typing import Protocol

from sluice.contracts.calls import TrafficState


class TrafficRouter(Protocol):
    """Splits requests between the stable and the new version. Every method is idempotent.

    Errors are raised as `temporalio.exceptions.ApplicationError` with a type from
    `contracts.errors` so the workflow and the CLI can tell retryable from fatal.
    A router that can also count responses per version (HAProxy) returns the counters in
    `TrafficState`; metrics read them through their own provider, not through this interface.
    """

    async def preflight(self) -> TrafficState:
        """Check the router answers and both versions' targets exist; return the split. Changes nothing."""
        ...

    async def set_weights(self, canary_weight: int) -> TrafficState:
        """Send `canary_weight` percent to the new version and the rest to stable, then read back.

        Returns the split as read back. Raises TRAFFIC_NOT_APPLIED if the read-back differs.
        """
        ...

    async def read_weights(self) -> TrafficState:
        """The current split, without changing anything."""
        ...
