"""Load for the demo, tests and benchmarks: send GETs, count answers by `X-Version` and status."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import httpx

NO_VERSION = "-"
"""The version label counted when a response has no `X-Version` header (e.g. HAProxy's 503)."""


@dataclass
class LoadCounts:
    """Answers counted by version and status; `failures` are requests that got no answer."""

    by_version: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    by_version_status: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: int = 0
    first_seen: dict[str, float] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    """`time.monotonic()` of the first and last answer from each version."""

    @property
    def total(self) -> int:
        """Answered requests (failures not included)."""
        return sum(self.by_status.values())

    def record(self, version: str, status: int, at: float) -> None:
        """Count one answer."""
        self.by_version[version] += 1
        self.by_status[status] += 1
        self.by_version_status[(version, status)] += 1
        self.first_seen.setdefault(version, at)
        self.last_seen[version] = at

    def copy(self) -> LoadCounts:
        """An independent snapshot."""
        return LoadCounts(
            by_version=Counter(self.by_version),
            by_status=Counter(self.by_status),
            by_version_status=Counter(self.by_version_status),
            failures=self.failures,
            first_seen=dict(self.first_seen),
            last_seen=dict(self.last_seen),
        )


def _send_one(client: httpx.Client, url: str, counts: LoadCounts) -> None:
    try:
        resp = client.get(url)
    except httpx.HTTPError:
        counts.failures += 1
        return
    counts.record(resp.headers.get("X-Version", NO_VERSION), resp.status_code, time.monotonic())


def send_requests(url: str, count: int, timeout: float = 5.0) -> LoadCounts:
    """Send `count` GETs to `url` one after another and count the answers."""
    counts = LoadCounts()
    with httpx.Client(timeout=timeout) as client:
        for _ in range(count):
            _send_one(client, url, counts)
    return counts


class LoadGenerator:
    """Sends about `rate` GETs per second to `url` from background threads until stopped.

    Each of `workers` threads paces itself at `rate / workers` per second on a fixed
    schedule; if answers are slower than that, the rate drops rather than piling up.
    Use as a context manager, or `start()` and `stop()`; `counts()` reads a snapshot.
    """

    def __init__(self, url: str, rate: float, workers: int = 4, timeout: float = 5.0) -> None:
        if rate <= 0 or workers < 1:
            raise ValueError("rate must be > 0 and workers >= 1")
        self.url = url
        self.rate = rate
        self.workers = workers
        self.timeout = timeout
        self._counts = LoadCounts()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Self:
        """Start the worker threads."""
        if self._threads:
            raise RuntimeError("load generator already started")
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True, name=f"load-{i}")
            self._threads.append(thread)
            thread.start()
        return self

    def _run(self, index: int) -> None:
        period = self.workers / self.rate
        next_at = time.monotonic() + period * index / self.workers
        local = LoadCounts()
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at = max(next_at + period, time.monotonic() - period)
                _send_one(client, self.url, local)
                with self._lock:
                    self._merge(local)
                local = LoadCounts()

    def _merge(self, part: LoadCounts) -> None:
        c = self._counts
        c.by_version.update(part.by_version)
        c.by_status.update(part.by_status)
        c.by_version_status.update(part.by_version_status)
        c.failures += part.failures
        for version, at in part.first_seen.items():
            c.first_seen.setdefault(version, at)
        for version, at in part.last_seen.items():
            c.last_seen[version] = max(at, c.last_seen.get(version, at))

    def counts(self) -> LoadCounts:
        """A snapshot of the counts so far."""
        with self._lock:
            return self._counts.copy()

    def reset(self) -> LoadCounts:
        """Return the counts so far and start counting from zero."""
        with self._lock:
            snapshot, self._counts = self._counts, LoadCounts()
        return snapshot

    def stop(self) -> LoadCounts:
        """Stop the threads (waits for in-flight requests) and return the final counts."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 1)
        return self.counts()

    def __enter__(self) -> Self:
        if not self._threads:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
