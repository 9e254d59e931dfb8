"""Loading a spec from YAML text or a mapping, with every problem reported as a SpecError."""

from __future__ import annotations

import yaml
from pydantic import ValidationError

from sluice.contracts.spec.errors import SpecError, SpecIssue, issues_from
from sluice.contracts.spec.rollout import AnySpec, RingRolloutSpec, RolloutSpec


def parse_spec(data: object, source: str = "spec") -> RolloutSpec:
    """Validate a mapping of a single-router rollout; raise SpecError listing every problem."""
    spec = parse_any_spec(data, source)
    if isinstance(spec, RingRolloutSpec):
        raise SpecError([SpecIssue(path="rings", message="expected a spec without rings here")], source)
    return spec


def parse_any_spec(data: object, source: str = "spec") -> AnySpec:
    """Validate a mapping: a spec with `rings:` is a ring rollout, any other a single rollout."""
    if not isinstance(data, dict):
        raise SpecError(
            [SpecIssue(path="", message="a spec is a YAML mapping with service, version, router, steps")],
            source,
        )
    model: type[RolloutSpec] | type[RingRolloutSpec] = RingRolloutSpec if "rings" in data else RolloutSpec
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SpecError(issues_from(err), source) from None


def load_spec(text: str, source: str = "spec") -> AnySpec:
    """Parse YAML text into a validated spec; raise SpecError (never a traceback-worthy error)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError([SpecIssue(path="", message=f"not valid YAML: {err}")], source) from None
    return parse_any_spec(data, source)
