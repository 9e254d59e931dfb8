"""Spec errors: every problem as a field path (`steps[2].pause`) and what to write instead."""

from __future__ import annotations

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
        return "unknown field; check its spelling against the spec reference (README, 'The spec')"
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
    return msg


def issues_from(error: ValidationError) -> list[SpecIssue]:
    """Turn a pydantic error into spec issues with dotted paths and hints."""
    return [SpecIssue(path=dotted_path(e["loc"]), message=describe_error(e)) for e in error.errors()]
