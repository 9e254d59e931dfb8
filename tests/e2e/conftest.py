"""The whole local stack, real processes only: dev server, `sluice worker`, HAProxy, two demos."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import run_sluice
from tests.support.demo_service import control, start_demo_service
from tests.support.haproxy import HAProxyInstance, start_haproxy
from tests.support.procs import ManagedProcess, free_port
from tests.support.status import StatusReader
from tests.support.temporal import DevServer, start_dev_server, start_worker

ROOT = Path(__file__).resolve().parents[2]
_services = itertools.count(1)


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    server = start_dev_server(tmp_path_factory.mktemp("temporal"))
    yield server
    server.stop()


_readers: dict[str, StatusReader] = {}


def status_reader(server: DevServer) -> StatusReader:
    """One in-process status reader per dev server, for the whole session."""
    if server.address not in _readers:
        _readers[server.address] = StatusReader(server.env())
    return _readers[server.address]


class WorkerPool:
    """One `sluice worker` per test module, started again only when a test killed it."""

    def __init__(self, server: DevServer, workdir: Path) -> None:
        self._server, self._workdir = server, workdir
        self._proc: ManagedProcess | None = None
        self._started = itertools.count(1)

    def get(self) -> ManagedProcess:
        if self._proc is None or not self._proc.running:
            if self._proc is not None:
                self._proc.stop()
            log = self._workdir / f"worker-{next(self._started)}.log"
            self._proc = start_worker(self._server, log)
        return self._proc

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()


@pytest.fixture(scope="module")
def worker_pool(dev_server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPool]:
    pool = WorkerPool(dev_server, tmp_path_factory.mktemp("workers"))
    yield pool
    pool.stop()


@pytest.fixture
def worker(worker_pool: WorkerPool) -> ManagedProcess:
    """The module's worker (a test may kill it: the next test gets a new one)."""
    return worker_pool.get()


@dataclass
class Stack:
    """One service behind its own HAProxy: `stable` runs v1, `canary` runs v2."""

    service: str
    haproxy: HAProxyInstance
    stable_url: str
    canary_url: str
    server: DevServer
    workdir: Path

    def spec(self, steps: list[dict[str, Any]], version: str = "v2", **analysis: Any) -> Path:
        """Write a rollout spec for this stack and return its path."""
        data: dict[str, Any] = {
            "service": self.service,
            "version": version,
            "stable_version": "v1",
            "router": self.haproxy.router(),
            "steps": steps,
        }
        if analysis:
            data["analysis"] = analysis
        path = self.workdir / f"rollout-{version}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def status(self) -> dict[str, Any]:
        """The rollout's status as `sluice status -o json` shows it, read in-process (fast to poll)."""
        found = status_reader(self.server).status(self.service)
        assert found is not None, f"no readable status for {self.service}"
        return found

    def canary_errors(self, rate: float) -> None:
        control(self.canary_url, error_rate=rate)

    def sluice(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI as a subprocess against this stack's dev server (`env` added)."""
        return run_sluice(*args, env={**self.server.env(), **(env or {})}, timeout=timeout)

    def temporal(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the Temporal CLI against this stack's dev server."""
        from sluice.cli.dev import temporal_binary

        return subprocess.run(
            [temporal_binary(), *args, "--address", self.server.address],
            capture_output=True,
            text=True,
            timeout=60,
        )


@contextmanager
def running_stack(
    dev_server: DevServer, workdir: Path, service: str, haproxy_service: str | None = None
) -> Iterator[Stack]:
    """v1 and v2 demo services behind a new HAProxy (backend `be_<haproxy_service>`), stopped after."""
    stable_port, canary_port = free_port(), free_port()
    stable = start_demo_service(stable_port, "v1", workdir)
    canary = start_demo_service(canary_port, "v2", workdir)
    haproxy = start_haproxy(
        workdir,
        service=haproxy_service or service,
        frontend_port=free_port(),
        stable_addr=f"127.0.0.1:{stable_port}",
        canary_addr=f"127.0.0.1:{canary_port}",
    )
    try:
        yield Stack(
            service=service,
            haproxy=haproxy,
            stable_url=f"http://127.0.0.1:{stable_port}",
            canary_url=f"http://127.0.0.1:{canary_port}",
            server=dev_server,
            workdir=workdir,
        )
    finally:
        haproxy.stop()
        stable.stop()
        canary.stop()


@pytest.fixture
def stack(dev_server: DevServer, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(dev_server, tmp_path, f"checkout-{os.getpid() % 10000}-{next(_services)}") as s:
        yield s
