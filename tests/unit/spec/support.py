"""What the spec tests share: the examples as data, and helpers that return the issues a spec raises."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.contracts.spec import SpecError, parse_any_spec, parse_spec

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "rollout.yaml").read_text())
COMPARE = yaml.safe_load((ROOT / "examples" / "compare.yaml").read_text())
AWS_EXAMPLES = {
    name: ROOT / "examples" / f"{name}.yaml" for name in ("alb", "lambda_alias", "apigateway", "route53")
}
PROXY_EXAMPLES = {name: ROOT / "examples" / f"{name}.yaml" for name in ("nginx", "traefik", "caddy")}


def rejected(mutate: Any) -> SpecError:
    """The SpecError of examples/rollout.yaml changed by `mutate`."""
    data = copy.deepcopy(EXAMPLE)
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return err.value


def compare_rejected(mutate: Any) -> SpecError:
    """The SpecError of examples/compare.yaml changed by `mutate`."""
    data = copy.deepcopy(COMPARE)
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return err.value


def only_issue(err: SpecError) -> tuple[str, str]:
    assert len(err.issues) == 1, err.issues
    return err.issues[0].path, err.issues[0].message


def spec_with(**changes: Any) -> Any:
    """examples/rollout.yaml with top-level fields replaced (None drops the field), validated."""
    data = copy.deepcopy(EXAMPLE)
    data.update(changes)
    return parse_any_spec({k: v for k, v in data.items() if v is not None})


def issues_with(**changes: Any) -> list[tuple[str, str]]:
    """The issues of `spec_with(**changes)`, which must be invalid."""
    with pytest.raises(SpecError) as err:
        spec_with(**changes)
    return [(i.path, i.message) for i in err.value.issues]


def steps_of(s: Any) -> list[str]:
    return [step.describe() for step in s.effective_steps()]


def example(name: str) -> dict[str, Any]:
    """examples/<name>.yaml as data."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    return data


def aws_issues(name: str, mutate: Any) -> list[tuple[str, str]]:
    """The issues of examples/<name>.yaml changed by `mutate`, which must be invalid."""
    data = copy.deepcopy(example(name))
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return [(i.path, i.message) for i in err.value.issues]


def _payloads(node: Any) -> Any:
    if isinstance(node, dict):
        if isinstance(node.get("data"), str) and "metadata" in node:
            yield node
        for value in node.values():
            yield from _payloads(value)
    elif isinstance(node, list):
        for value in node:
            yield from _payloads(value)


def _specs_in(node: Any) -> Any:
    if isinstance(node, dict):
        if {"service", "version", "steps"} <= node.keys() and ("router" in node or "rings" in node):
            yield node
        for value in node.values():
            yield from _specs_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _specs_in(value)


def history_specs() -> list[dict[str, Any]]:
    """Every distinct spec serialised in tests/histories (workflow, child and continue-as-new inputs)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((ROOT / "tests" / "histories").glob("*.json")):
        for payload in _payloads(json.loads(path.read_text())):
            try:
                data = json.loads(base64.b64decode(payload["data"]))
            except ValueError:
                continue
            for spec in _specs_in(data):
                found.setdefault(json.dumps(spec, sort_keys=True), spec)
    return list(found.values())
