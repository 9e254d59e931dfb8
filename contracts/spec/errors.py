"""Spec errors: every problem as a field path (`steps[2].pause`) and what to write instead."""

from __future__ import annotations

import json

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from sluice.contracts.spec.metrics import PROVIDER_TYPES
from sluice.contracts.spec.routers import ROUTER_TYPES


class SpecIssue(BaseModel):
    """One problem in a spec: where (`steps[2].pause`) and what to do about it."""

    path: str
    message: str


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
        if part.startswith(("function-", "tagged-union")):
            continue
        out += f".{part}" if out else part
    return out


def describe_error(err: ErrorDetails) -> str:
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field; check its spelling against the spec reference (docs/spec.md)"
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
        why = "write it without quotes"
    elif isinstance(given, float) and kind == "int_type":
        why = "write it without a fraction"
    else:
        why = "infinity and NaN are not measurable limits" if kind == "finite_number" else ""
    shown = json.dumps(given) if isinstance(given, bool | str | int | float | None) else type(given).__name__
    return f"expected {expected}, got {shown}" + (f"; {why}" if why else "")


def issue_of(err: ErrorDetails) -> SpecIssue:
    """One pydantic error as a spec issue: its dotted path (with a `located` field) and a hint."""
    path = dotted_path(err["loc"])
    if err["type"] == "spec_field":
        field = str(err.get("ctx", {}).get("field", ""))
        path = path + field if not path or field.startswith("[") else f"{path}.{field}"
        path = path.removeprefix(".")
    return SpecIssue(path=path, message=describe_error(err))


def issues_from(error: ValidationError) -> list[SpecIssue]:
    """Turn a pydantic error into spec issues with dotted paths and hints."""
    return [issue_of(e) for e in error.errors()]
