"""Steps and presets: weights, pauses, approvals, and the steps a preset expands into."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sluice.contracts.spec import (
    SpecError,
    load_spec,
    parse_spec,
)
from tests.unit.spec.support import (
    EXAMPLE,
    ROOT,
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


def test_an_empty_pause_is_refused_with_both_meanings() -> None:
    path, msg = only_issue(rejected(lambda d: d["steps"].__setitem__(1, {"pause": None})))
    assert path == "steps[1].pause" and "pause: 5m" in msg and "pause: {}" in msg
    text = (ROOT / "examples" / "rollout.yaml").read_text().replace("- pause: 30s ", "- pause:     ")
    with pytest.raises(SpecError) as err:
        load_spec(text)
    assert [i.path for i in err.value.issues] == ["steps[1].pause"]


def test_pause_and_approval_mappings_still_wait() -> None:
    s = spec_with(steps=[{"set_weight": 10}, {"pause": {}}, {"approval": None}, {"set_weight": 100}])
    assert steps_of(s)[1:3] == ["wait for resume or promote", "approval by anyone"]


@pytest.mark.parametrize(
    ("steps", "where"),
    [
        ([{"set_weight": 10}, {"set_weight": 100}, {"pause": "5m"}], "steps[2]"),
        ([{"set_weight": 100}, {"set_weight": 50}], "steps[1]"),
        ([{"set_weight": 100}, {"set_weight": 100}], "steps[1]"),
        ([{"set_weight": 100}, {"approval": {}}], "steps[1]"),
    ],
)
def test_steps_after_100_percent_are_refused(steps: list[dict[str, Any]], where: str) -> None:
    [(path, msg)] = issues_with(steps=steps)
    assert path == where and "post_promotion" in msg


@pytest.mark.parametrize(
    "steps", [[{"pause": "30s"}], [{"set_weight": 0}], [{"approval": {}}, {"pause": "1m"}]]
)
def test_canary_steps_that_never_shift_traffic_are_refused(steps: list[dict[str, Any]]) -> None:
    [(path, msg)] = issues_with(steps=steps)
    assert path == "steps" and "no step sends traffic" in msg and "blue_green" in msg


def test_the_number_of_steps_is_bounded() -> None:
    [(path, msg)] = issues_with(steps=[{"set_weight": 10}] * 100_001)
    assert path == "steps" and "more than 200 steps" in msg
    assert (
        len(spec_with(steps=[{"set_weight": 10}, {"pause": "1s"}] * 99 + [{"set_weight": 100}]).steps) == 199
    )


def test_a_preset_expansion_is_not_held_to_the_written_step_rules() -> None:
    s = spec_with(steps=None, preset="Linear10PercentEvery1Minute", post_promotion="5m")
    assert steps_of(s)[-2:] == ["shift to 100%", "post-promotion watch 5m"]


@pytest.mark.parametrize(
    ("bad", "says"),
    [("99999999999h", "365 days"), ("1" * 21 + "s", "365 days"), ("1" * 400 + "ms", "too long")],
)
def test_a_huge_pause_is_refused_not_an_internal_error(bad: str, says: str) -> None:
    path, msg = only_issue(rejected(lambda d: d["steps"].__setitem__(1, {"pause": bad})))
    assert path == "steps[1].pause" and says in msg
