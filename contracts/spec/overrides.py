"""`--set KEY=VALUE`: simple fields of a spec replaced from the command line, so CI needs no `sed`."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel

from sluice.contracts.spec.errors import SpecIssue, members, unknown_field
from sluice.contracts.spec.rollout import RingRolloutSpec, RolloutSpec

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_SCALARS = (str, int, float, bool, timedelta)


def override_issue(key: str, message: str) -> SpecIssue:
    """An issue about one `--set`, at the path `--set KEY`."""
    return SpecIssue(path=f"--set {key}", message=message)


def apply_overrides(data: object, overrides: Sequence[str]) -> tuple[object, list[SpecIssue]]:
    """`data` (a spec mapping, not changed) with each `KEY=VALUE` set, and the problems of the `--set`s.

    KEY is a dotted path of simple fields (`version`, `stable_version`, `analysis.interval`,
    `router.canary_server`): a name, number, duration or choice, not a list or mapping (a field
    that takes either, such as `router.admin_socket` or `preset`, is set to the one value). VALUE is
    read as a YAML scalar where the field takes a number (`analysis.failure_limit=2`); a field that
    takes text keeps VALUE as written, so `version=1.10` stays "1.10".
    """
    if not overrides or not isinstance(data, dict):
        return data, []
    out = copy.deepcopy(data)
    issues: list[SpecIssue] = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            issues.append(override_issue(item, "expected KEY=VALUE with a dotted KEY, e.g. --set version=v3"))
            continue
        problem = _set(out, key, value)
        if problem:
            issues.append(override_issue(key, problem))
    return out, issues


def _set(data: dict[str, Any], key: str, value: str) -> str | None:
    """Set `key` in `data`; return what is wrong with it instead, if anything."""
    model: type[BaseModel] = RingRolloutSpec if "rings" in data else RolloutSpec
    node = data
    parts = key.split(".")
    for depth, name in enumerate(parts):
        fields = tuple(f for f in model.model_fields if f != "watch")
        if name not in fields:
            return unknown_field(name, fields)
        kinds = members(model.model_fields[name].annotation)
        if depth == len(parts) - 1:
            if not any(_is_scalar(kind) for kind in kinds):  # `admin_socket` is one address or a list
                return (
                    f"`{key}` is not a simple field (a name, number, duration or choice); "
                    "`--set` does not replace lists or mappings: edit the spec"
                )
            node[name] = _parse(value, kinds)
            return None
        models = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        child = node.setdefault(name, {})
        if not models or not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            return f"`{where}` holds no fields to set (it is not a mapping)"
        if len(models) > 1:  # a router or a metric: the one its `type`/`provider` names
            tagged = [m for m in models if _tag(m) is not None and child.get(_tag(m)) in _tags(m)]
            if len(tagged) != 1:
                return f"`{'.'.join(parts[: depth + 1])}` has no valid `type` to set a field of"
            models = tagged
        model, node = models[0], child
    return None


def _tag(model: type[BaseModel]) -> str | None:
    return next((f for f in ("type", "provider") if f in model.model_fields), None)


def _tags(model: type[BaseModel]) -> tuple[str, ...]:
    tag = _tag(model)
    return tuple(str(a) for a in get_args(model.model_fields[tag].annotation)) if tag else ()


def _is_scalar(kind: Any) -> bool:
    return get_origin(kind) is Literal or (isinstance(kind, type) and issubclass(kind, _SCALARS))


def _parse(value: str, kinds: list[Any]) -> Any:
    """VALUE as YAML reads a scalar when the field takes a number; as written when it takes text."""
    numeric = any(isinstance(k, type) and issubclass(k, int | float) for k in kinds)
    textual = any(get_origin(k) is Literal or (isinstance(k, type) and issubclass(k, str)) for k in kinds)
    if numeric and not textual:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, bool | int | float | str) or parsed is None else value
    return value
