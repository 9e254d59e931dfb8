"""A rollout through a router plugin: the example plugin installed for the CLI and the worker only."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import run_sluice
from tests.support.procs import ManagedProcess, wait_until
from tests.support.temporal import DevServer, start_worker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "tests" / "plugins" / "example_router"


@pytest.fixture
def plugin_worker(
    dev_server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ManagedProcess]:
    """A `sluice worker` that has the example plugin installed (on its PYTHONPATH)."""
    monkeypatch.setenv("PYTHONPATH", str(PLUGIN_DIR))
    worker = start_worker(dev_server, tmp_path / "worker.log")
    yield worker
    worker.stop()


def test_a_rollout_through_a_plugin_router(
    dev_server: DevServer, plugin_worker: ManagedProcess, tmp_path: Path
) -> None:
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"blue": 100, "green": 0}))
    service = f"plugin-{os.getpid() % 10000}"
    spec = tmp_path / "rollout.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "service": service,
                "version": "v2",
                "router": {
                    "type": "example_file",
                    "path": str(weights),
                    "stable_target": "blue",
                    "canary_target": "green",
                },
                "steps": [{"set_weight": 25}, {"pause": {}}, {"set_weight": 100}],
            }
        )
    )
    env = {**dev_server.env(), "PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), str(ROOT)])}

    def status() -> dict[str, Any]:
        done = run_sluice("status", service, "--output", "json", env=env)
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    started = run_sluice("start", "-f", str(spec), env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    wait_until(lambda: status()["phase"] == "paused", 60, interval=0.3, what="paused at 25%")
    assert status()["weights"] == {"stable": 75, "canary": 25}
    assert json.loads(weights.read_text()) == {"blue": 75, "green": 25}

    assert run_sluice("resume", service, "--reason", "plugin ok", env=env).returncode == 0
    wait_until(lambda: status()["phase"] == "promoted", 60, interval=0.3, what="promoted")
    assert json.loads(weights.read_text()) == {"blue": 0, "green": 100}
