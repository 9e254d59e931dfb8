"""Real parts on loopback for integration tests: demo services, HAProxy in front, Prometheus.

Every process is started on free ports, waited for until it answers, and stopped by PID.
A missing binary is an error, not a skip: these tests exist to run against the real thing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from sluice.contracts.spec import HAProxyRouter
from tests.support.demo_service import control, start_demo_service
from tests.support.haproxy import HAPROXY_BIN, HAProxyInstance, start_haproxy
from tests.support.procs import ManagedProcess, free_port
from tests.support.prometheus import PROMETHEUS_BIN, PrometheusInstance, start_prometheus

SERVICE = "demo"
STABLE_VERSION = "v1"
CANARY_VERSION = "v2"


@dataclass(frozen=True)
class DemoService:
    """A running demo service: its version, address and process."""

    version: str
    port: int
    process: ManagedProcess

    @property
    def addr(self) -> str:
        """`127.0.0.1:<port>`, for HAProxy and Prometheus targets."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL without a trailing slash."""
        return f"http://{self.addr}"

    def control(self, error_rate: float | None = None, latency_ms: float | None = None) -> None:
        """Change the service's behaviour at runtime."""
        control(self.url, error_rate=error_rate, latency_ms=latency_ms)


@dataclass(frozen=True)
class DemoPair:
    """The stable and the canary version of the demo service."""

    stable: DemoService
    canary: DemoService


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.fail(f"{binary!r} is not on PATH; install the Debian package (see DESIGN.md)")


@pytest.fixture(scope="module")
def demo_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoPair]:
    """Stable (v1) and canary (v2) demo services, shared by a test module."""
    logs = tmp_path_factory.mktemp("demo")
    started: list[ManagedProcess] = []
    try:
        services = []
        for version in (STABLE_VERSION, CANARY_VERSION):
            port = free_port()
            proc = start_demo_service(port, version, logs)
            started.append(proc)
            services.append(DemoService(version, port, proc))
        yield DemoPair(stable=services[0], canary=services[1])
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def demo(demo_services: DemoPair) -> Iterator[DemoPair]:
    """The demo services, healthy (no errors, no added latency) at the start of each test."""
    for service in (demo_services.stable, demo_services.canary):
        service.control(error_rate=0.0, latency_ms=0.0)
    yield demo_services
    for service in (demo_services.stable, demo_services.canary):
        if service.process.running:
            service.control(error_rate=0.0, latency_ms=0.0)


def _haproxy(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair, level: str) -> HAProxyInstance:
    _require(HAPROXY_BIN)
    # A short directory: unix socket paths are limited to 107 bytes.
    workdir = tmp_path_factory.mktemp("hap")
    return start_haproxy(
        workdir,
        service=SERVICE,
        frontend_port=free_port(),
        stable_addr=demo.stable.addr,
        canary_addr=demo.canary.addr,
        socket_level=level,
    )


@pytest.fixture
def haproxy(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair) -> Iterator[HAProxyInstance]:
    """A fresh HAProxy per test (weights stable 100 / canary 0, counters at zero)."""
    instance = _haproxy(tmp_path_factory, demo, "admin")
    yield instance
    instance.stop()


@pytest.fixture
def haproxy_operator(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair) -> Iterator[HAProxyInstance]:
    """An HAProxy whose stats socket is only `level operator` (may read, may not set weights)."""
    instance = _haproxy(tmp_path_factory, demo, "operator")
    yield instance
    instance.stop()


def router_spec(instance: HAProxyInstance, **overrides: object) -> HAProxyRouter:
    """The spec's router section for `instance`, with fields overridden as given."""
    fields: dict[str, object] = {**instance.router(), "timeout": "2s"}
    fields.update(overrides)
    return HAProxyRouter.model_validate(fields)


@pytest.fixture
def router(haproxy: HAProxyInstance) -> HAProxyRouter:
    """A router spec pointing at the per-test HAProxy."""
    return router_spec(haproxy)


RouterFactory = Callable[..., HAProxyRouter]


@pytest.fixture
def make_router(haproxy: HAProxyInstance) -> RouterFactory:
    """`make_router(canary_server="nope")`: a router spec for the per-test HAProxy, overridden."""
    return lambda **overrides: router_spec(haproxy, **overrides)


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, demo_services: DemoPair
) -> Iterator[PrometheusInstance]:
    """Prometheus scraping both demo services every second; waits for their first samples."""
    _require(PROMETHEUS_BIN)
    workdir = tmp_path_factory.mktemp("prom")
    instance = start_prometheus(
        workdir,
        port=free_port(),
        targets=[demo_services.stable.addr, demo_services.canary.addr],
    )
    try:
        # Targets are discovered a few seconds after start; wait for both to be scraped.
        instance.wait_for_sample('count(up{job="demo"} == 1) == 2', timeout=30)
        yield instance
    finally:
        instance.stop()
