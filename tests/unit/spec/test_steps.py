"""Steps and presets: weights, pauses, approvals, and the steps a preset expands into."""

from __future__ import annotations

import copy

import pytest

from sluice.contracts.spec import (
    parse_spec,
)
from tests.unit.spec.support import (
    EXAMPLE,
    issues_with,
    only_issue,
    rejected,
    spec_with,
    steps_of,
)


@pytest.mark.parametrize("weight", [-1, 101, 150])
def test_weight_outside_0_100(weight: int) -> None:
    path, msg = only_issue(rejected(lambda d: d["steps"].__setitem__(0, {"set_weight": weight})))
    assert path == "steps[0].set_weight" and "outside 0-100" in msg


def test_no_steps() -> None:
    path, msg = only_issue(rejected(lambda d: d.__setitem__("steps", [])))
    assert path == "steps" and "at least one" in msg


@pytest.mark.parametrize("bad", [30, "30", "30 seconds", "1d", "abc", "-5s"])
def test_duration_that_does_not_parse(bad: object) -> None:
    path, msg = only_issue(rejected(lambda d: d["steps"].__setitem__(1, {"pause": bad})))
    assert path == "steps[1].pause" and "500ms, 30s, 5m, 1h" in msg


def test_step_with_two_kinds() -> None:
    path, msg = only_issue(rejected(lambda d: d["steps"].__setitem__(0, {"set_weight": 10, "pause": "1s"})))
    assert path == "steps[0]" and "exactly one" in msg


def test_effective_steps_end_at_100() -> None:
    data = copy.deepcopy(EXAMPLE)
    data["steps"] = [{"set_weight": 10}, {"pause": "1m"}]
    assert [s.describe() for s in parse_spec(data).effective_steps()][-1] == "shift to 100%"
    assert len(parse_spec(EXAMPLE).effective_steps()) == 6


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("AllAtOnce", ["shift to 100%"]),
        ("Canary10Percent5Minutes", ["shift to 10%", "bake 5m", "shift to 100%"]),
        ("Canary10Percent15Minutes", ["shift to 10%", "bake 15m", "shift to 100%"]),
    ],
)
def test_named_presets_expand(preset: str, expected: list[str]) -> None:
    assert steps_of(spec_with(steps=None, preset=preset)) == expected


def test_linear_presets_expand_to_ten_steps() -> None:
    one = steps_of(spec_with(steps=None, preset="Linear10PercentEvery1Minute"))
    assert [s for s in one if s.startswith("shift")] == [f"shift to {w}%" for w in range(10, 101, 10)]
    assert one.count("bake 1m") == 9
    assert steps_of(spec_with(steps=None, preset="Linear10PercentEvery3Minutes")).count("bake 3m") == 9


def test_exponential_preset_is_appconfig_like() -> None:
    s = spec_with(
        steps=None,
        preset={"type": "exponential", "growth_factor": 10, "deploy_time": "8m", "bake_time": "10m"},
    )
    assert steps_of(s) == [
        "shift to 10%", "bake 2m", "shift to 20%", "bake 2m", "shift to 40%", "bake 2m",
        "shift to 80%", "bake 2m", "shift to 100%", "post-promotion watch 10m",
    ]  # fmt: skip


def test_preset_and_steps_together_are_refused() -> None:
    assert any(p == "steps" and "not both" in m for p, m in issues_with(preset="AllAtOnce"))


def test_unknown_preset_is_named() -> None:
    assert any(p.startswith("preset") for p, _ in issues_with(steps=None, preset="Canary50Percent"))


def test_approval_step_fields() -> None:
    s = spec_with(steps=[{"set_weight": 10}, {"approval": None}, {"set_weight": 100}])
    assert steps_of(s)[1] == "approval by anyone"
    assert any(
        p == "steps[1].approval.on_timeout"
        for p, _ in issues_with(steps=[{"set_weight": 10}, {"approval": {"on_timeout": "wait"}}])
    )
    assert any(
        p == "steps[0]" and "exactly one" in m
        for p, m in issues_with(steps=[{"set_weight": 10, "approval": {}}])
    )
