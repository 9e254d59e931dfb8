"""The JSON Schema for editors: generated from the models, accepting every example (shorthands and
all), refusing what an editor should flag, and equal to the published copy in docs/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sluice.contracts.spec import SCHEMA_ID, load_spec, rollout_json_schema
from tests.unit.spec.support import ROOT, history_specs

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SCHEMA = rollout_json_schema()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors inside an `anyOf`/`oneOf` (where an optional field's real complaint is)."""
    return [error] + [leaf for sub in error.context or [] for leaf in _leaves(sub)]


def schema_errors(data: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, leaf.absolute_path))}: {leaf.message[:200]}"
        for error in VALIDATOR.iter_errors(data)
        for leaf in _leaves(error)
    ]


def test_the_schema_is_a_valid_draft_07_schema_ready_for_schemastore() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert SCHEMA["$id"] == SCHEMA_ID and SCHEMA["title"] and SCHEMA["description"]
    top = SCHEMA["definitions"]["RolloutSpec"]["properties"]
    assert all(top[name].get("description") for name in ("service", "version", "router", "steps", "analysis"))


def test_the_published_copy_is_what_sluice_schema_prints() -> None:
    published = json.loads((ROOT / "docs" / "rollout.schema.json").read_text())
    assert published == SCHEMA, "regenerate it: sluice schema > docs/rollout.schema.json"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_valid_against_the_schema(path: Path) -> None:
    load_spec(path.read_text(), str(path))  # and valid for the models, of course
    assert schema_errors(yaml.safe_load(path.read_text())) == []


def test_the_shorthands_are_in_the_schema() -> None:
    base = yaml.safe_load((ROOT / "examples" / "rollout.yaml").read_text())
    forms: list[dict[str, Any]] = [
        {"steps": [{"set_weight": 10}, {"pause": "30s"}, {"pause": "1h30m"}, {"pause": "500ms"}]},
        {"steps": [{"set_weight": 10}, {"pause": {}}, {"pause": {"duration": "5m"}}]},
        {"steps": [{"set_weight": 10}, {"approval": None}, {"approval": {"approvers": ["alice"]}}]},
        {"steps": [], "preset": "Canary10Percent5Minutes"},
        {"steps": [], "preset": {"type": "exponential", "growth_factor": 10, "deploy_time": "10m"}},
        {
            "strategy": "blue_green",
            "steps": [{"pause": "1m"}],
            "post_promotion": "10m",
            "scale_down_delay": "1h",
        },
    ]
    for changes in forms:
        data = {**copy.deepcopy(base), **changes}
        if not data["steps"]:
            del data["steps"]
        load_spec(yaml.safe_dump(data))
        assert schema_errors(data) == [], changes


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.__setitem__("verison", "v3"), ""),
        (lambda d: d["steps"].__setitem__(0, {"setWeight": 10}), "steps/0"),
        (lambda d: d["steps"].__setitem__(0, {"set_weight": 150}), "steps/0/set_weight"),
        (lambda d: d["steps"].__setitem__(1, {"pause": 30}), "steps/1/pause"),
        (lambda d: d["steps"].__setitem__(1, {"pause": "soon"}), "steps/1/pause"),
        (lambda d: d["steps"].__setitem__(1, {}), "steps/1"),
        (lambda d: d.__setitem__("version", 1.1), "version"),
        (lambda d: d.__setitem__("service", "Check Out"), "service"),
        (lambda d: d["router"].__setitem__("type", "nginx"), "router"),
        (lambda d: d["router"].__delitem__("backend"), "router"),
        (lambda d: d["analysis"].__setitem__("interval", "5 seconds"), "analysis/interval"),
        (lambda d: d["analysis"]["metrics"][0].__setitem__("provider", "datadog"), "analysis/metrics/0"),
        (lambda d: d.__setitem__("strategy", "rolling"), "strategy"),
        (lambda d: d.__setitem__("preset", "Canary50Percent"), "preset"),
    ],
)
def test_the_schema_refuses_what_an_editor_should_flag(change: Any, where: str) -> None:
    data = yaml.safe_load((ROOT / "examples" / "rollout.yaml").read_text())
    change(data)
    errors = schema_errors(data)
    assert errors, "the schema accepted it"
    assert any(e.startswith(f"{where}:") for e in errors), errors


def test_a_ring_rollout_is_checked_as_one() -> None:
    data = yaml.safe_load((ROOT / "examples" / "rings.yaml").read_text())
    data["rings"][0]["soakTime"] = "1m"
    assert any(e.startswith("rings/0:") for e in schema_errors(data))


def test_no_spec_the_models_accept_from_the_histories_is_refused_for_its_values() -> None:
    # Recorded specs are model dumps (with `watch: null` on steps and every default written out):
    # without the engine-only `watch`, each must still pass, so the schema is not stricter than
    # the models on real specs.
    for data in history_specs():
        cleaned = copy.deepcopy(data)
        for step in cleaned.get("steps", []):
            step.pop("watch", None)
        assert schema_errors(cleaned) == [], data
