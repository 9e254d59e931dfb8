"""Strategy, preset, approval and ring fields of the spec: expansions, and rejections that name the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.cli.plan import build_plan, plan_json
from sluice.cli.render import render_plan
from sluice.contracts.spec import RingRolloutSpec, RolloutSpec, SpecError, load_spec, parse_any_spec

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "examples" / "rollout.yaml").read_text())


def spec(**changes: Any) -> Any:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return parse_any_spec({k: v for k, v in data.items() if v is not None})


def issues(**changes: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as err:
        spec(**changes)
    return [(i.path, i.message) for i in err.value.issues]


def steps_of(s: Any) -> list[str]:
    return [step.describe() for step in s.effective_steps()]


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("AllAtOnce", ["shift to 100%"]),
        ("Canary10Percent5Minutes", ["shift to 10%", "bake 5m", "shift to 100%"]),
        ("Canary10Percent15Minutes", ["shift to 10%", "bake 15m", "shift to 100%"]),
    ],
)
def test_named_presets_expand(preset: str, expected: list[str]) -> None:
    assert steps_of(spec(steps=None, preset=preset)) == expected


def test_linear_presets_expand_to_ten_steps() -> None:
    one = steps_of(spec(steps=None, preset="Linear10PercentEvery1Minute"))
    assert [s for s in one if s.startswith("shift")] == [f"shift to {w}%" for w in range(10, 101, 10)]
    assert one.count("bake 1m") == 9
    assert steps_of(spec(steps=None, preset="Linear10PercentEvery3Minutes")).count("bake 3m") == 9


def test_exponential_preset_is_appconfig_like() -> None:
    s = spec(
        steps=None,
        preset={"type": "exponential", "growth_factor": 10, "deploy_time": "8m", "bake_time": "10m"},
    )
    assert steps_of(s) == [
        "shift to 10%", "bake 2m", "shift to 20%", "bake 2m", "shift to 40%", "bake 2m",
        "shift to 80%", "bake 2m", "shift to 100%", "post-promotion watch 10m",
    ]  # fmt: skip


def test_plan_shows_a_preset_expansion_and_the_watch() -> None:
    s = spec(steps=None, preset="Canary10Percent5Minutes", post_promotion="10m")
    text = "\n".join(render_plan(build_plan(s)))
    assert "preset Canary10Percent5Minutes" in text and "post-promotion watch 10m" in text
    assert "added" not in text
    data = plan_json(build_plan(s))
    assert data["preset"] == "Canary10Percent5Minutes" and data["steps"][-1]["kind"] == "watch"


def test_preset_and_steps_together_are_refused() -> None:
    assert any(p == "steps" and "not both" in m for p, m in issues(preset="AllAtOnce"))


def test_unknown_preset_is_named() -> None:
    assert any(p.startswith("preset") for p, _ in issues(steps=None, preset="Canary50Percent"))


def test_blue_green_example_and_its_expansion() -> None:
    s = load_spec((ROOT / "examples" / "blue_green.yaml").read_text())
    assert isinstance(s, RolloutSpec) and s.strategy == "blue_green"
    assert steps_of(s) == [
        "bake 1m",
        "approval by alice or bob (2h, then rollback)",
        "shift to 100%",
        "post-promotion watch 10m",
    ]


def test_blue_green_refuses_partial_weights_and_presets() -> None:
    assert any("switches 100% at once" in m for _, m in issues(strategy="blue_green"))
    assert any("presets" in m for _, m in issues(strategy="blue_green", steps=None, preset="AllAtOnce"))


def test_scale_down_delay_must_cover_the_watch() -> None:
    found = issues(strategy="blue_green", steps=[], post_promotion="30m", scale_down_delay="10m")
    assert any("scale_down_delay is shorter" in m for _, m in found)


def test_blue_green_fields_need_blue_green() -> None:
    assert any("blue_green only" in m for _, m in issues(scale_down_delay="10m"))


def test_approval_step_fields() -> None:
    s = spec(steps=[{"set_weight": 10}, {"approval": None}, {"set_weight": 100}])
    assert steps_of(s)[1] == "approval by anyone"
    assert any(
        p == "steps[1].approval.on_timeout"
        for p, _ in issues(steps=[{"set_weight": 10}, {"approval": {"on_timeout": "wait"}}])
    )
    assert any(
        p == "steps[0]" and "exactly one" in m for p, m in issues(steps=[{"set_weight": 10, "approval": {}}])
    )


def test_rings_example_validates() -> None:
    s = load_spec((ROOT / "examples" / "rings.yaml").read_text())
    assert isinstance(s, RingRolloutSpec) and [r.name for r in s.rings] == ["canary-region", "eu"]
    first = s.ring_spec(0)
    assert first.watch_time is not None and first.router.type == "haproxy"
    assert steps_of(first)[-1] == "post-promotion watch 30m"
    assert s.ring_spec(1).watch_time is None


def test_ring_errors_name_the_ring() -> None:
    data = yaml.safe_load((ROOT / "examples" / "rings.yaml").read_text())
    data["rings"][1]["approval"] = {"approvers": ["bob"]}
    with pytest.raises(SpecError) as err:
        parse_any_spec(data)
    assert "last ring" in err.value.issues[0].message
    data["rings"][1].pop("approval")
    data["rings"][1]["name"] = "canary-region"
    with pytest.raises(SpecError) as err:
        parse_any_spec(data)
    assert "unique" in err.value.issues[0].message


def test_digest_of_a_spec_without_new_fields_is_unchanged() -> None:
    # The digest as computed before the strategies fields existed (main at a7e9ab1).
    assert load_spec((ROOT / "examples" / "rollout.yaml").read_text()).digest() == "65b138b82b63ccf0"
