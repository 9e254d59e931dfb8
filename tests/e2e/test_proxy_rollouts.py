"""Whole rollouts through NGINX, Traefik and Caddy: dev server, `sluice worker`, the proxy, demo services."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import ROOT
from tests.support.caddy import start_caddy
from tests.support.cli import run_sluice
from tests.support.demo_service import control, start_demo_service
from tests.support.load import LoadGenerator, send_requests
from tests.support.nginx import start_nginx
from tests.support.procs import ManagedProcess, free_port, wait_until
from tests.support.temporal import DevServer
from tests.support.traefik import start_traefik

pytestmark = pytest.mark.integration

PROXIES = ("nginx", "traefik", "caddy")


@dataclass
class ProxyStack:
    """One service behind one proxy: `stable` runs v1, `canary` runs v2."""

    service: str
    router: dict[str, str]
    url: str
    canary_url: str
    server: DevServer
    workdir: Path

    def spec(self, steps: list[dict[str, Any]], **analysis: Any) -> Path:
        data: dict[str, Any] = {
            "service": self.service,
            "version": "v2",
            "stable_version": "v1",
            "router": self.router,
            "steps": steps,
        }
        if analysis:
            data["analysis"] = analysis
        path = self.workdir / "rollout.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def sluice(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_sluice(*args, env=self.server.env(), timeout=timeout)

    def status(self) -> dict[str, Any]:
        done = self.sluice("status", self.service, "--output", "json")
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def wait_status(self, check: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def ok() -> bool:
            nonlocal last
            last = self.status()
            return check(last)

        try:
            wait_until(ok, timeout, interval=0.3, what="rollout status")
        except TimeoutError as err:
            raise AssertionError(f"status never matched; last: {json.dumps(last, indent=1)}") from err
        return last

    def share_of_new_version(self, requests: int = 100) -> float:
        counts = send_requests(self.url + "/", requests)
        assert counts.total == requests, counts
        return counts.by_version["v2"] / requests


_services = itertools.count(1)


@pytest.fixture(params=PROXIES)
def proxy_stack(
    request: pytest.FixtureRequest, dev_server: DevServer, tmp_path: Path
) -> Iterator[ProxyStack]:
    name: str = request.param
    stable_port, canary_port = free_port(), free_port()
    started: list[Any] = [
        start_demo_service(stable_port, "v1", tmp_path),
        start_demo_service(canary_port, "v2", tmp_path),
    ]
    stable, canary = f"127.0.0.1:{stable_port}", f"127.0.0.1:{canary_port}"
    try:
        if name == "nginx":
            n = start_nginx(
                tmp_path / "nginx", frontend_port=free_port(), stable_addr=stable, canary_addr=canary
            )
            started.append(n)
            router, url = n.router(), n.url
        elif name == "traefik":
            t = start_traefik(
                tmp_path / "traefik",
                web_port=free_port(),
                api_port=free_port(),
                stable_addr=stable,
                canary_addr=canary,
            )
            started.append(t)
            router, url = t.router(), t.url
        else:
            c = start_caddy(
                tmp_path / "caddy",
                port=free_port(),
                admin_port=free_port(),
                stable_addr=stable,
                canary_addr=canary,
            )
            started.append(c)
            router, url = c.router(), c.url
        yield ProxyStack(
            # A service of its own per test: a promoted service refuses another spec of its version.
            service=f"{name}-{os.getpid() % 10000}-{next(_services)}",
            router=router,
            url=url,
            canary_url=f"http://{canary}",
            server=dev_server,
            workdir=tmp_path,
        )
    finally:
        for part in reversed(started):
            part.stop()


def test_promotion_with_weights_checked_by_real_requests(
    proxy_stack: ProxyStack, worker: ManagedProcess
) -> None:
    stack = proxy_stack
    spec = stack.spec(
        [{"set_weight": 10}, {"pause": {}}, {"set_weight": 50}, {"pause": {}}, {"set_weight": 100}],
        interval="1s",
        inconclusive_limit=1000,
        metrics=[
            {"name": "smoke", "provider": "http", "url": f"{stack.canary_url}/", "min_success_ratio": 1.0}
        ],
    )
    assert stack.share_of_new_version() == 0.0
    done = stack.sluice("start", "-f", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr

    at10 = stack.wait_status(lambda s: s["phase"] == "paused" and s["step_index"] == 1)
    assert at10["weights"] == {"stable": 90, "canary": 10}
    assert stack.share_of_new_version(200) == pytest.approx(0.10, abs=0.02)
    assert stack.sluice("resume", stack.service, "--reason", "10% looks good").returncode == 0

    at50 = stack.wait_status(lambda s: s["phase"] == "paused" and s["step_index"] == 3)
    assert at50["weights"] == {"stable": 50, "canary": 50}
    assert stack.share_of_new_version(200) == pytest.approx(0.50, abs=0.02)
    assert {v["metric"]: v["verdict"] for v in at50["verdicts"]} == {"smoke": "pass"}
    assert stack.sluice("resume", stack.service, "--reason", "50% looks good").returncode == 0

    final = stack.wait_status(lambda s: s["phase"] == "promoted")
    assert final["weights"] == {"stable": 0, "canary": 100}
    assert stack.share_of_new_version() == 1.0


def test_failing_canary_is_rolled_back_by_analysis(proxy_stack: ProxyStack, worker: ManagedProcess) -> None:
    stack = proxy_stack
    spec = stack.spec(
        [{"set_weight": 20}, {"pause": "2m"}, {"set_weight": 100}],
        interval="1s",
        inconclusive_limit=30,
        metrics=[
            {
                "name": "canary-errors",
                "provider": "http",
                "url": f"{stack.canary_url}/",
                "requests": 5,
                "min_success_ratio": 0.95,
            }
        ],
    )
    env = {**os.environ, **stack.server.env()}
    with LoadGenerator(stack.url + "/", rate=20):
        waiting = subprocess.Popen(
            [sys.executable, "-m", "sluice", "start", "-f", str(spec), "--wait"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            stack.wait_status(lambda s: (s.get("weights") or {}).get("canary") == 20)
            # The load generator's requests take turns in the same round robin, so these 200 see
            # only part of each cycle: close to 20%, not exact.
            assert stack.share_of_new_version(200) == pytest.approx(0.20, abs=0.06)
            control(stack.canary_url, error_rate=1.0)
            out, err = waiting.communicate(timeout=90)
        finally:
            waiting.kill()
    assert waiting.returncode == 1, out + err
    final = stack.status()
    assert final["phase"] == "rolled_back"
    assert final["weights"] == {"stable": 100, "canary": 0}
    assert final["rollback"]["verified_at"] is not None
    assert "canary-errors" in final["rollback"]["reason"]
    counts = send_requests(stack.url + "/", 100)
    assert counts.by_version == {"v1": 100}
    assert counts.by_status == {200: 100}
