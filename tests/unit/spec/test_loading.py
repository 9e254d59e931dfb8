"""Loading specs: YAML and mappings in, a validated spec or a SpecError listing every problem out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from sluice.contracts.spec import (
    RolloutSpec,
    SpecError,
    load_spec,
    parse_any_spec,
)
from tests.unit.spec.support import (
    ROOT,
    history_specs,
    only_issue,
    rejected,
)


def test_issue_example_validates_as_it_stands() -> None:
    spec = load_spec((ROOT / "examples" / "rollout.yaml").read_text())
    assert spec.service == "checkout" and spec.router.backend == "be_checkout"
    assert [s.describe() for s in spec.steps] == [
        "shift to 10%",
        "bake 30s",
        "shift to 50%",
        "bake 1m",
        "wait for resume or promote",
        "shift to 100%",
    ]
    assert spec.analysis is not None and spec.analysis.interval == timedelta(seconds=5)
    assert [m.provider for m in spec.analysis.metrics] == ["haproxy", "http", "prometheus"]


def test_spec_round_trips_through_json() -> None:
    spec = load_spec((ROOT / "examples" / "rollout.yaml").read_text())
    again = RolloutSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec and again.digest() == spec.digest()


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.__setitem__("verison", "v3"), "verison"),
        (lambda d: d["router"].__setitem__("bakend", "x"), "router.bakend"),
        (lambda d: d["steps"].__setitem__(0, {"set_wieght": 10}), "steps[0].set_wieght"),
        (lambda d: d["analysis"].__setitem__("failure_limt", 1), "analysis.failure_limt"),
        (
            lambda d: d["analysis"]["metrics"][1].__setitem__("min_sucess_ratio", 1),
            "analysis.metrics[1].min_sucess_ratio",
        ),
    ],
)
def test_unknown_fields_are_errors(mutate: Any, where: str) -> None:
    path, msg = only_issue(rejected(mutate))
    assert path == where and "unknown field" in msg


def test_every_problem_is_listed_at_once() -> None:
    def many(d: dict[str, Any]) -> None:
        d["steps"][0] = {"set_weight": 200}
        d["router"]["type"] = "envoy"
        d["extra"] = 1

    assert {i.path for i in rejected(many).issues} == {"steps[0].set_weight", "router", "extra"}


def test_yaml_errors_and_non_mappings() -> None:
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec("service: [unclosed")
    with pytest.raises(SpecError, match="YAML mapping"):
        load_spec("- just a list")


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_validates(path: Any) -> None:
    spec = load_spec(path.read_text(), str(path))
    assert type(spec).model_validate(spec.model_dump(mode="json")) == spec


def _as_recorded(now: Any, recorded: Any) -> Any:
    """`now` restricted to the keys `recorded` has: fields added since then are left out."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        return {k: _as_recorded(now.get(k), v) for k, v in recorded.items()}
    if isinstance(recorded, list) and isinstance(now, list) and len(now) == len(recorded):
        return [_as_recorded(n, r) for n, r in zip(now, recorded, strict=True)]
    return now


def test_every_spec_in_the_saved_histories_parses_to_what_was_recorded() -> None:
    recorded = history_specs()
    assert len(recorded) >= 30, "tests/histories lost its specs"
    for data in recorded:
        spec = parse_any_spec(data)
        assert _as_recorded(spec.model_dump(mode="json"), data) == data


BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("service: " + "[" * 2000 + "]" * 2000, "nested deeper than 32 levels"),
        ("".join("  " * i + "a:\n" for i in range(200)), "nested deeper than 32 levels"),
        (BOMB, "expand it to more than 20000 values"),
        ("a: &a [*a]\n", "refers to a value that contains it"),
        (
            "deep: &d [[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]\nb: [[[[[[[[[[[[[[*d]]]]]]]]]]]]]]",
            "deeper than 32",
        ),
        ("service: checkout\x00\n", "not valid YAML"),
        ("#" * (1 << 20) + "\n", "too large"),
        ("service: !!python/object/apply:os.system ['true']", "not valid YAML"),
    ],
)
def test_hostile_yaml_is_refused_with_a_message(text: str, says: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(text)
    [issue] = err.value.issues
    assert issue.path == "" and says in issue.message


def test_anchors_and_merge_keys_within_bounds_still_work() -> None:
    text = (ROOT / "examples" / "rings.yaml").read_text()
    text = text.replace("    router:\n      type: haproxy", "    router: &haproxy\n      type: haproxy", 1)
    spec = load_spec(text)
    assert spec == load_spec((ROOT / "examples" / "rings.yaml").read_text())
