"""Spec errors: every problem as a field path (`steps[2].pause`) and what to write instead."""

from __future__ import annotations

import difflib
import json
import math
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from sluice.contracts.spec.metrics import PROVIDER_TYPES
from sluice.contracts.spec.routers import ROUTER_TYPES


class SpecIssue(BaseModel):
    """One problem in a spec: where (`steps[2].pause`) and what to do about it.

    `line` and `column` (from 1) say where the field is written, when the spec came from YAML
    text and the field is in it (a missing field has no place of its own).
    """

    path: str
    message: str
    line: int | None = None
    column: int | None = None


class SpecError(ValueError):
    """A spec that must not start a rollout; `issues` lists every problem found."""

    def __init__(self, issues: list[SpecIssue], source: str = "spec") -> None:
        self.issues = issues
        self.source = source
        lines = [f"{i.path}: {i.message}" if i.path else i.message for i in issues]
        super().__init__(f"{source} is invalid:\n  " + "\n  ".join(lines))


def dotted_path(loc: tuple[int | str, ...]) -> str:
    """`('steps', 2, 'pause')` -> `steps[2].pause`, dropping pydantic's union-tag segments."""
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        prev = parts[i - 1] if i else None
        before = parts[i - 2] if i > 1 else None
        if prev == "router" and part in ROUTER_TYPES:
            continue
        if isinstance(prev, int) and before == "metrics" and part in PROVIDER_TYPES:
            continue
        if part.startswith(("function-", "tagged-union", "literal[")) or part in _UNION_MEMBERS:
            continue
        out += f".{part}" if out else part
    return out


_UNION_MEMBERS = frozenset({"ExponentialPreset"})
"""Models that pydantic names in an error's location when a union holds them besides a literal."""


def describe_error(err: ErrorDetails, known: tuple[str, ...] = (), written: str = "") -> str:
    """`err` in the spec's words; `known` are the fields of the mapping it is in, for suggestions, and
    `written` the value as the YAML text has it (`1.10` where YAML made the number 1.1)."""
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return unknown_field(str(err["loc"][-1]), known)
    if kind == "string_type" and isinstance(err["input"], bool | int | float):
        return _quote_hint(err, written)
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return (
            f"unknown {ctx.get('discriminator', 'type').strip(chr(39))} {ctx.get('tag')!r}; "
            f"expected one of {ctx.get('expected_tags')}"
        )
    if kind == "union_tag_not_found":
        ctx = err.get("ctx", {})
        return f"missing {ctx.get('discriminator', 'type')}; say which kind this is"
    if kind in ("less_than_equal", "greater_than_equal") and err["loc"][-1] == "set_weight":
        return f"weight {err['input']!r} is outside 0-100; a weight is the percent sent to the new version"
    if kind == "too_short" and err["loc"][-1] in ("steps", "metrics"):
        return f"no {err['loc'][-1]}; list at least one"
    if kind == "too_long" and err["loc"] and err["loc"][-1] == "steps":
        ctx = err.get("ctx", {})
        return (
            f"more than {ctx.get('max_length')} steps; a rollout needs at most one shift per percent "
            "with a bake between, and a longer list only grows the workflow's history"
        )
    if kind in ("int_type", "float_type", "finite_number"):
        return _not_a_number(kind, err["input"])
    if kind in _BOUNDS:
        word, bound = _BOUNDS[kind]
        limit = err.get("ctx", {}).get(bound)
        shown = f"{limit:g}" if isinstance(limit, float) else limit
        return f"expected {word} {shown}, got {err['input']!r}"
    return msg


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}


def _not_a_number(kind: str, given: object) -> str:
    expected = {"int_type": "a whole number", "float_type": "a number"}.get(kind, "a finite number")
    if isinstance(given, bool):
        why = "true and false are not numbers"
    elif isinstance(given, str):
        why = "write it without quotes" if _looks_numeric(given) else ""
    elif isinstance(given, float) and kind == "int_type":
        why = "write it without a fraction"
    else:
        why = "infinity and NaN are not measurable limits" if kind == "finite_number" else ""
    shown = json.dumps(given) if isinstance(given, bool | str | int | float | None) else type(given).__name__
    return f"expected {expected}, got {shown}" + (f"; {why}" if why else "")


def _quote_hint(err: ErrorDetails, written: str) -> str:
    given = err["input"]
    shown = json.dumps(given)
    written = written or shown
    field = next((str(p) for p in reversed(err["loc"]) if isinstance(p, str)), "field")
    what = "true or false" if isinstance(given, bool) else f"the number {shown}"
    return f'expected text, but YAML read {written} as {what}; write it in quotes: {field}: "{written}"'


# Names users of Argo Rollouts and Flagger type, with what the same thing is called here.
_STEPS = (
    "Flagger's `stepWeight`, `stepWeights` and `maxWeight` are written out as steps here: "
    "`- set_weight: 10`, `- pause: 1m`, `- set_weight: 20`... (or a `preset:`)"
)
_BOUNDS_HINT = "a metric's condition is written as bounds here: `max:` and/or `min:` on the metric"
_INLINE = "metrics are written inline under `analysis: {metrics: [...]}`"
_NOTIFY = "webhooks told of each phase change are `notify:` at the top level"
_NOT_K8S = (
    "a Sluice spec is not a Kubernetes resource: write `service`, `version`, `router` and `steps` "
    "at the top level"
)
_FOREIGN: dict[str, str] = {
    "setWeight": "Argo Rollouts' `setWeight` is a step here: `- set_weight: 10` under `steps:`",
    "failureLimit": (
        "Argo Rollouts' `failureLimit` is `failure_limit` under `analysis:` (failing ticks tolerated)"
    ),
    "inconclusiveLimit": "Argo Rollouts' `inconclusiveLimit` is `inconclusive_limit` under `analysis:`",
    "consecutiveErrorLimit": (
        "a metric that cannot be measured is inconclusive here: `inconclusive_limit` under `analysis:`"
    ),
    "successCondition": _BOUNDS_HINT,
    "failureCondition": _BOUNDS_HINT,
    "thresholdRange": "Flagger's `thresholdRange` is written `max:` and/or `min:` on the metric here",
    "threshold": (
        "Flagger's `threshold` (failed checks before a rollback) is `failure_limit` under `analysis:` "
        "(failing ticks tolerated: threshold minus one)"
    ),
    "stepWeight": _STEPS,
    "stepWeights": _STEPS,
    "maxWeight": _STEPS,
    "iterations": (
        "Flagger's blue/green `iterations` are `pre_promotion: {duration: 5m}` with `strategy: blue_green`"
    ),
    "canaryService": (
        "the router names both targets: `canary_server` (haproxy), `canary_target_group_arn` (alb), "
        "`canary_function_version` (lambda_alias), `canary_deployment_id` (apigateway), "
        "`canary_set_identifier` (route53)"
    ),
    "stableService": (
        "the router names both targets: `stable_server` (haproxy), `stable_target_group_arn` (alb), "
        "`stable_function_version` (lambda_alias), `stable_deployment_id` (apigateway), "
        "`stable_set_identifier` (route53)"
    ),
    "trafficRouting": "traffic is split by `router:` (with a `type:`) at the top level",
    "canary": "a canary's `steps:` go at the top level (`strategy: canary` is the default)",
    "blueGreen": "blue/green is `strategy: blue_green` at the top level",
    "prePromotionAnalysis": "Argo's `prePromotionAnalysis` is `pre_promotion: {duration: 1m, analysis: ...}`",
    "postPromotionAnalysis": (
        "Argo's `postPromotionAnalysis` is `post_promotion: 10m` (the `analysis` keeps running)"
    ),
    "scaleDownDelaySeconds": "Argo's `scaleDownDelaySeconds` is `scale_down_delay:`, a duration (`30s`)",
    "templates": _INLINE,
    "templateName": _INLINE,
    "templateRef": _INLINE,
    "webhooks": _NOTIFY,
    "alerts": _NOTIFY,
    "apiVersion": _NOT_K8S,
    "kind": _NOT_K8S,
    "metadata": _NOT_K8S,
    "spec": _NOT_K8S,
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def unknown_field(name: str, known: tuple[str, ...] = ()) -> str:
    """`unknown field; did you mean `set_weight`?`: the field of this mapping a camelCase name stands
    for, else what Argo Rollouts' or Flagger's name is called here, else the closest field (difflib),
    else the fields that are allowed here."""
    snake = _CAMEL.sub("_", name).lower().replace("-", "_")
    if snake in known and snake != name:
        return f"unknown field; did you mean `{snake}`? (Sluice's fields are snake_case)"
    if name in _FOREIGN:
        return f"unknown field; {_FOREIGN[name]}"
    close = difflib.get_close_matches(snake, known, n=1, cutoff=0.6)
    if close and close[0] != name:
        return f"unknown field; did you mean `{close[0]}`?"
    text = "unknown field; check its spelling against the spec reference (docs/spec.md)"
    return text + (f"; the fields here are {', '.join(known)}" if known else "")


def members(tp: Any) -> list[Any]:
    """`tp` without Annotated and None: the one type, or the members of a union."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        return [m for arg in get_args(tp) if arg is not type(None) for m in members(arg)]
    return [tp]


def _tag_of(model: type[BaseModel]) -> set[str]:
    """The literal `type`/`provider` of a router or metric, and the model's name (how pydantic names
    union members in an error's location)."""
    tags = {model.__name__}
    for field in ("type", "provider"):
        info = model.model_fields.get(field)
        if info is not None:
            tags.update(str(a) for a in get_args(info.annotation))
    return tags


def fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """The fields of the model found at `loc` (pydantic's location, union tags and all) under `model`;
    empty when `loc` leads nowhere a model is."""
    current: list[Any] = [model]
    for part in loc:
        models = [m for m in current if isinstance(m, type) and issubclass(m, BaseModel)]
        if isinstance(part, int):
            current = [a for m in current if get_origin(m) is list for a in members(get_args(m)[0])]
            continue
        tagged = [m for m in models if part in _tag_of(m)]
        if tagged and len(models) > 1:
            current = tagged
            continue
        nxt: list[Any] = []
        for m in models:
            info = m.model_fields.get(part)
            if info is not None:
                nxt += members(info.annotation)
        current = nxt
    models = [m for m in current if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) != 1:
        return ()
    return tuple(name for name in models[0].model_fields if name != "watch")


def _looks_numeric(text: str) -> bool:
    """`"10"`, `" 0.5"`: a number in quotes (`"ten"`, `"inf"` are not)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def issue_of(
    err: ErrorDetails, model: type[BaseModel] | None = None, scalars: Mapping[str, str] | None = None
) -> SpecIssue:
    """One pydantic error as a spec issue: its dotted path (with a `located` field) and a hint.

    With the `model` validated, an unknown field's hint suggests the closest field of its mapping;
    `scalars` (path -> the text of a number or boolean as written in YAML) words the quote hint.
    """
    path = dotted_path(err["loc"])
    if err["type"] == "spec_field":
        field = str(err.get("ctx", {}).get("field", ""))
        path = path + field if not path or field.startswith("[") else f"{path}.{field}"
        path = path.removeprefix(".")
    unknown = model is not None and err["type"] == "extra_forbidden"
    known = fields_at(model, err["loc"][:-1]) if model is not None and unknown else ()
    written = (scalars or {}).get(path, "")
    return SpecIssue(path=path, message=describe_error(err, known, written))


def issues_from(
    error: ValidationError, model: type[BaseModel] | None = None, scalars: Mapping[str, str] | None = None
) -> list[SpecIssue]:
    """Turn a pydantic error into spec issues with dotted paths and hints (suggestions need `model`)."""
    return [issue_of(e, model, scalars) for e in error.errors()]
