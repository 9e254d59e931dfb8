"""Read a rollout's status in-process (the typed client on a background event loop), for polling.

Polling through `sluice status` starts a Python process per look (about a second of CPU),
which on a loaded machine is slower than the short bakes tests watch. Tests that check the
CLI itself still run it; everything else reads the status here.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from typing import Any

from sluice.runtime.client import SluiceClient, SluiceError


class StatusReader:
    """A connected `SluiceClient` on its own thread; `status()` is a plain blocking call."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="status-reader")
        self._thread.start()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the client reads Temporal's settings from the environment
        try:
            self._client = self._run(SluiceClient.connect())
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def status(self, service: str) -> dict[str, Any] | None:
        """The service's latest rollout status as `sluice status -o json` prints it; None if unreadable."""
        try:
            status = self._run(self._client.status(service))
        except SluiceError:
            return None
        result: dict[str, Any] = status.model_dump(mode="json")
        return result

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
