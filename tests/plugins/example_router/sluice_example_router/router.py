"""The example plugin's router: reads and writes the split in a JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from temporalio.exceptions import ApplicationError

from sluice.contracts import errors
from sluice.contracts.calls import TrafficState
from sluice_example_router.spec import FileRouter


class FileTrafficRouter:
    """`{"<stable_target>": w, "<canary_target>": w}` in `path`."""

    def __init__(self, spec: FileRouter) -> None:
        self.spec = spec

    async def preflight(self) -> TrafficState:
        state = await self.read_weights()
        if state.stable_weight == 0 or state.canary_weight > 0:
            raise ApplicationError(
                f"found {state.detail}; a rollout starts with all traffic on stable",
                type=errors.UNEXPECTED_SPLIT,
                non_retryable=True,
            )
        return state

    async def set_weights(self, canary_weight: int) -> TrafficState:
        path = Path(self.spec.path)
        tmp = path.with_suffix(".tmp")
        weights = {self.spec.stable_target: 100 - canary_weight, self.spec.canary_target: canary_weight}
        tmp.write_text(json.dumps(weights))
        os.replace(tmp, path)
        return await self.read_weights()

    async def read_weights(self) -> TrafficState:
        try:
            weights = json.loads(Path(self.spec.path).read_text())
        except FileNotFoundError:
            raise ApplicationError(
                f"{self.spec.path} does not exist", type=errors.ROUTER_CONFIG, non_retryable=True
            ) from None
        stable, canary = weights[self.spec.stable_target], weights[self.spec.canary_target]
        return TrafficState(
            stable_weight=stable,
            canary_weight=canary,
            detail=f"{self.spec.stable_target}={stable} {self.spec.canary_target}={canary}",
        )
