"""docker-compose.yml, checked by parsing (no Docker engine runs here): services, pinned images,
ports, environment, and that the worker's command and config match the code."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from sluice.contracts.search_attributes import REGISTRATION
from sluice.contracts.spec import HAProxyRouter, load_spec
from sluice.runtime.telemetry import METRICS_ADDRESS_ENV

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES) == {
        "postgresql",
        "temporal",
        "register-search-attributes",
        "temporal-ui",
        "worker",
        "sluice",
        "demo-v1",
        "demo-v2",
        "haproxy",
        "prometheus",
    }
    assert SERVICES["temporal"]["environment"]["DB"] == "postgres12"
    assert SERVICES["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"


def test_every_image_is_pinned() -> None:
    for name, service in SERVICES.items():
        image = service.get("image")
        assert image or service.get("build"), name
        if image and "build" not in service and not image.startswith("sluice-worker:"):
            repo, _, tag = image.rpartition(":")
            assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image}"
    assert SERVICES["prometheus"]["image"].endswith(":v2.42.0")  # the version the tests run
    assert SERVICES["haproxy"]["image"].startswith("haproxy:2.6.")


def test_published_ports() -> None:
    ports = {name: s.get("ports", []) for name, s in SERVICES.items()}
    assert ports["temporal"] == ["7233:7233"]
    assert ports["temporal-ui"] == ["8080:8080"]
    assert ports["prometheus"] == ["9090:9090"]
    assert ports["haproxy"] == ["8000:8000"]
    assert ports["worker"] == []  # nothing to publish; Prometheus scrapes it inside the network


def test_worker_runs_this_repository_s_worker_with_its_settings() -> None:
    worker = SERVICES["worker"]
    assert worker["build"] == "."
    assert worker["command"] == ["sluice", "worker"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["sluice", "worker"]' in dockerfile
    # Every folder the `sluice` package links to is copied next to it before `pip install .`.
    for link in sorted((ROOT / "sluice").iterdir()):
        if link.is_symlink():
            target = Path(os.readlink(link)).name
            assert f"COPY {target} ./{target}" in dockerfile, target
    assert "COPY sluice ./sluice" in dockerfile
    assert "COPY tests" not in dockerfile  # test machinery never ships
    env = worker["environment"]
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    host, port = env[METRICS_ADDRESS_ENV].rsplit(":", 1)
    assert host == "0.0.0.0"
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert f"worker:{port}" in targets


def test_search_attributes_registered_at_start_match_the_code() -> None:
    command = " ".join(SERVICES["register-search-attributes"]["command"])
    registered = dict(re.findall(r"(Sluice\w+)=(\w+)", command))
    assert registered == REGISTRATION
    assert SERVICES["worker"]["depends_on"]["register-search-attributes"]["condition"] == (
        "service_completed_successfully"
    )


def test_the_example_spec_matches_haproxy_and_the_demo_services() -> None:
    spec = load_spec((ROOT / "examples" / "compose.yaml").read_text())
    router = spec.router
    assert isinstance(router, HAProxyRouter)
    cfg = (ROOT / "deploy" / "haproxy.cfg").read_text()
    host, port = router.admin_socket.split(":")
    assert host == "haproxy" and f"stats socket ipv4@0.0.0.0:{port} level admin" in cfg
    assert f"backend {router.backend}" in cfg and "balance roundrobin" in cfg
    assert f"server {router.stable_server} demo-v1:8000 weight 100" in cfg
    assert f"server {router.canary_server} demo-v2:8000 weight 0" in cfg
    for version in ("v1", "v2"):
        command = SERVICES[f"demo-{version}"]["command"]
        assert command[:2] == ["python", "/opt/sluice-demo/service.py"]
        assert command[command.index("--version") + 1] == version
        assert command[command.index("--port") + 1] == "8000"


def test_notify_example_is_valid() -> None:
    spec = load_spec((ROOT / "examples" / "notify.yaml").read_text())
    assert [t.format for t in spec.notify] == ["slack", "json"]
    assert spec.notify[0].url_env == "SLACK_WEBHOOK_URL" and spec.notify[0].url is None


def test_ci_examples_run_commands_the_cli_accepts() -> None:
    from sluice.cli.main import build_parser

    github = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    gitlab = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-ci.yml").read_text())
    scripts = [step.get("run", "") for step in github["jobs"]["rollout"]["steps"]]
    scripts += gitlab["rollout"]["script"]
    commands = [
        line.strip() for s in scripts for line in s.splitlines() if line.strip().startswith("sluice ")
    ]
    assert len(commands) == 2
    for command in commands:
        argv = command.split(">")[0].split()[1:]
        args = build_parser().parse_args(argv)
        assert args.command == "start" and args.wait and args.output == "json"
