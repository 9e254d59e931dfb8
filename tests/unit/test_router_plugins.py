"""Routers as plugins: the `sluice.routers` entry points, found by the spec's `type`.

The example plugin in tests/plugins/example_router is "installed" by putting that directory
on PYTHONPATH (its `.dist-info` declares the entry point), so the tests that use it run
`sluice` in a subprocess, where discovery happens at import as it does for users.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import yaml

from sluice.contracts.spec import BUILTIN_ROUTER_TYPES
from sluice.contracts.spec.base import SafeName, SpecModel
from sluice.contracts.spec.plugins import GROUP, discover
from tests.support.cli import run_sluice

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "tests" / "plugins" / "example_router"
WITH_PLUGIN = {"PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), str(ROOT)])}


class GoodRouter(SpecModel):
    router: ClassVar[str] = "tests.unit.test_router_plugins:NoRouter"
    type: Literal["good"]
    target: SafeName

    def describe(self) -> str:
        return "good"


class WrongTag(GoodRouter):
    type: Literal["other"]  # type: ignore[assignment]


class NoRouterPath(SpecModel):
    type: Literal["nopath"]

    def describe(self) -> str:
        return "nopath"


class NotASpecModel:
    router = "x:y"


def point(name: str, attr: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"tests.unit.test_router_plugins:{attr}", group=GROUP)


def found(*points: EntryPoint) -> tuple[list[str], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins = discover(BUILTIN_ROUTER_TYPES, points)
    return [p.router_type for p in plugins], [str(w.message) for w in caught]


def test_a_proper_plugin_is_found() -> None:
    assert found(point("good", "GoodRouter")) == (["good"], [])


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (point("nginx", "GoodRouter"), "'nginx' is a built-in router type"),
        (point("good", "WrongTag"), "must be Literal['good']"),
        (point("nopath", "NoRouterPath"), "must name its TrafficRouter as 'module:Class'"),
        (point("plain", "NotASpecModel"), "must be a subclass of sluice.contracts.spec.base.SpecModel"),
        (EntryPoint(name="gone", value="no_such_module:Spec", group=GROUP), "No module named"),
    ],
    ids=["shadows-builtin", "tag-mismatch", "no-router", "not-a-spec-model", "import-error"],
)
def test_a_plugin_that_cannot_be_used_is_left_out_with_the_reason(entry: EntryPoint, why: str) -> None:
    types, messages = found(entry, point("good", "GoodRouter"))
    assert types == ["good"]  # the others still load
    assert len(messages) == 1 and why in messages[0] and "is not used" in messages[0]


def test_two_plugins_for_one_type_keep_the_first() -> None:
    types, messages = found(point("good", "GoodRouter"), point("good", "GoodRouter"))
    assert types == ["good"] and "already provides" in messages[0]


# --- the example plugin, installed -----------------------------------------------------------


def spec(tmp_path: Path, **router: Any) -> Path:
    data = {
        "service": "files",
        "version": "v2",
        "router": {
            "type": "example_file",
            "path": str(tmp_path / "weights.json"),
            "stable_target": "blue",
            "canary_target": "green",
            **router,
        },
        "steps": [{"set_weight": 25}, {"pause": "1s"}, {"set_weight": 100}],
    }
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_installed_plugin_validates_and_plans_like_a_builtin(tmp_path: Path) -> None:
    done = run_sluice("validate", "-f", str(spec(tmp_path)), env=WITH_PLUGIN)
    assert done.returncode == 0, done.stderr
    planned = run_sluice("plan", "-f", str(spec(tmp_path)), env=WITH_PLUGIN)
    assert planned.returncode == 0, planned.stderr
    assert f"via example_file {tmp_path / 'weights.json'}" in planned.stdout


@pytest.mark.parametrize(
    ("router", "where", "hint"),
    [
        ({"stable_target": "blue green"}, "router.stable_target", "letters, digits"),
        ({"colour": "blue"}, "router.colour", "unknown field"),
        ({"timeout": "0s"}, "router.timeout", "longer than 0s"),
        ({"canary_target": "blue"}, "router", "same target"),
    ],
)
def test_the_plugins_fields_are_refused_with_their_path(
    tmp_path: Path, router: dict[str, Any], where: str, hint: str
) -> None:
    done = run_sluice("validate", "-f", str(spec(tmp_path, **router)), env=WITH_PLUGIN)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"\n{where}: " in done.stderr and hint in done.stderr


def test_without_the_plugin_the_type_is_unknown(tmp_path: Path) -> None:
    done = run_sluice("validate", "-f", str(spec(tmp_path)))
    assert done.returncode == 2
    assert "'example_file'" in done.stderr


def test_the_plugins_router_is_found_by_type(tmp_path: Path) -> None:
    weights = tmp_path / "weights.json"
    weights.write_text('{"blue": 100, "green": 0}')
    script = f"""
import asyncio
from sluice.activities.routers import router_for
from sluice.contracts.spec import load_spec
spec = load_spec(open({str(spec(tmp_path))!r}).read())
router = router_for(spec.router)
print(type(router).__name__, asyncio.run(router.preflight()).canary_weight)
state = asyncio.run(router.set_weights(30))
print(state.stable_weight, state.canary_weight)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **WITH_PLUGIN},
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["FileTrafficRouter 0", "70 30"]
    assert weights.read_text() == '{"blue": 70, "green": 30}'
