"""The whole local stack in one object: dev server, worker, two demo versions behind HAProxy,
and optionally a Prometheus scraping both versions."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.demo_service import control, start_demo_service
from tests.support.haproxy import HAProxyInstance, start_haproxy
from tests.support.procs import ManagedProcess, free_port
from tests.support.prometheus import PrometheusInstance, start_prometheus
from tests.support.temporal import DevServer, start_dev_server, start_worker


def port_or_free(preferred: int | None) -> int:
    """`preferred` if nothing listens there, else any free port (so the demo runs beside others)."""
    if preferred is None:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


@dataclass
class LocalStack:
    """Everything a real rollout needs, on loopback. `close()` stops it all by PID."""

    workdir: Path
    service: str
    server: DevServer
    worker: ManagedProcess
    haproxy: HAProxyInstance
    stable_port: int
    canary_port: int
    demos: dict[str, ManagedProcess] = field(default_factory=dict)
    prometheus: PrometheusInstance | None = None
    """Scrapes both demo versions every second (`http_requests_total`, latency histogram)."""

    @property
    def stable_url(self) -> str:
        return f"http://127.0.0.1:{self.stable_port}"

    @property
    def canary_url(self) -> str:
        return f"http://127.0.0.1:{self.canary_port}"

    def deploy(self, server: str, version: str) -> None:
        """Replace what runs behind HAProxy's `server` (`stable` or `canary`) with `version`."""
        port = self.stable_port if server == "stable" else self.canary_port
        old = self.demos.pop(server, None)
        if old is not None:
            old.stop()
        self.demos[server] = start_demo_service(port, version, self.workdir)

    def break_canary(self, error_rate: float = 1.0) -> None:
        """Make the new version answer that fraction of requests with 500."""
        control(self.canary_url, error_rate=error_rate)

    def reset_weights(self) -> None:
        """All traffic on the `stable` server, as after a fresh deployment of stable."""
        for srv, weight in (("stable", 100), ("canary", 0)):
            reply = self.haproxy.command(f"set weight {self.haproxy.backend}/{srv} {weight}")
            if reply.strip():
                raise RuntimeError(f"HAProxy refused to set {srv} weight: {reply.strip()}")

    def spec(self, version: str, stable_version: str, steps: list[dict[str, Any]], **analysis: Any) -> str:
        """A rollout spec (YAML text) for this stack's HAProxy backend."""
        data: dict[str, Any] = {
            "service": self.service,
            "version": version,
            "stable_version": stable_version,
            "router": self.haproxy.router(),
            "steps": steps,
        }
        if analysis:
            data["analysis"] = analysis
        return yaml.safe_dump(data, sort_keys=False)

    def close(self) -> None:
        """Stop every process this stack started."""
        for proc in self.demos.values():
            proc.stop()
        if self.prometheus is not None:
            self.prometheus.stop()
        self.haproxy.stop()
        self.worker.stop()
        self.server.stop()


def start_local_stack(
    workdir: Path,
    service: str = "checkout",
    temporal_port: int | None = None,
    ui_port: int | None = None,
    frontend_port: int | None = None,
    stable_version: str = "v1",
    canary_version: str = "v2",
    with_prometheus: bool = False,
) -> LocalStack:
    """Start the dev server, a worker, `stable_version` and `canary_version` behind HAProxy
    (and with `with_prometheus`, a Prometheus scraping both versions)."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_dev_server(workdir / "temporal", port_or_free(temporal_port), port_or_free(ui_port))
    started: list[Any] = [server]
    try:
        worker = start_worker(server, workdir / "worker.log")
        started.append(worker)
        stable_port, canary_port = free_port(), free_port()
        demos = {
            "stable": start_demo_service(stable_port, stable_version, workdir),
            "canary": start_demo_service(canary_port, canary_version, workdir),
        }
        started += demos.values()
        haproxy = start_haproxy(
            workdir,
            service=service,
            frontend_port=port_or_free(frontend_port),
            stable_addr=f"127.0.0.1:{stable_port}",
            canary_addr=f"127.0.0.1:{canary_port}",
        )
        started.append(haproxy)
        prometheus = None
        if with_prometheus:
            targets = [f"127.0.0.1:{stable_port}", f"127.0.0.1:{canary_port}"]
            prometheus = start_prometheus(workdir / "prometheus", port=free_port(), targets=targets)
            started.append(prometheus)
            prometheus.wait_for_sample('up{job="demo"} == 1')
    except BaseException:
        for part in reversed(started):
            part.stop()
        raise
    return LocalStack(
        workdir=workdir,
        service=service,
        server=server,
        worker=worker,
        haproxy=haproxy,
        stable_port=stable_port,
        canary_port=canary_port,
        demos=demos,
        prometheus=prometheus,
    )
