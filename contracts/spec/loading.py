"""Loading a spec from YAML text or a mapping, with every problem reported as a SpecError."""

from __future__ import annotations

from typing import Any

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


MAX_CHARACTERS = 1 << 20
"""A spec is a few kilobytes; a megabyte is no spec."""
MAX_DEPTH = 32
"""Deepest nesting a spec needs is about 8 (rings[0].analysis.metrics[0].errors.dimensions)."""
MAX_VALUES = 20_000
"""Values a document may expand to through anchors and aliases (200 steps of rings are far fewer)."""


class _Refused(yaml.YAMLError):
    """A document refused for its shape (size, depth, aliases), before any spec rule runs."""


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents nested deeper than MAX_DEPTH while composing them
    (before the recursive composer overflows the stack) and alias graphs that expand to more
    than MAX_VALUES values or refer to themselves (before anything walks the expansion)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels; a spec needs far fewer")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Any) -> Any:
        _check_expansion(node)
        return super().construct_document(node)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose expansion is larger than MAX_VALUES, deeper than MAX_DEPTH, or cyclic.

    Iterative, with the size and height of each node computed once: an alias bomb (`a: &a [x, x]`,
    `b: &b [*a, *a]`...) is measured without being expanded.
    """
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (values in its expansion, its height)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in done:
            continue
        children = _children(node)
        if not children_done:
            if key in open_nodes:
                raise _Refused("an alias refers to a value that contains it; a spec is a tree")
            open_nodes.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in open_nodes:
                    raise _Refused("an alias refers to a value that contains it; a spec is a tree")
                stack.append((child, False))
            continue
        open_nodes.discard(key)
        size = 1 + sum(done[id(c)][0] for c in children)
        height = 1 + max((done[id(c)][1] for c in children), default=0)
        if size > MAX_VALUES:
            raise _Refused(f"anchors and aliases expand it to more than {MAX_VALUES} values; write it out")
        if height > MAX_DEPTH:
            raise _Refused(f"anchors and aliases make it nested deeper than {MAX_DEPTH} levels")
        done[key] = (size, height)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_spec(text: str, source: str = "spec") -> AnySpec:
    """Parse YAML text into a validated spec; raise SpecError (never a traceback-worthy error).

    Hostile documents (over a megabyte, nested deeper than MAX_DEPTH, alias bombs) are refused
    with a message before they are expanded or validated.
    """
    if len(text) > MAX_CHARACTERS:
        message = f"the document is too large ({len(text)} characters; a spec is at most {MAX_CHARACTERS})"
        raise SpecError([SpecIssue(path="", message=message)], source)
    try:
        data = yaml.load(text, Loader=_SpecLoader)
    except _Refused as err:
        raise SpecError([SpecIssue(path="", message=f"not a spec: {err}")], source) from None
    except yaml.YAMLError as err:
        raise SpecError([SpecIssue(path="", message=f"not valid YAML: {err}")], source) from None
    except RecursionError:
        message = f"not a spec: nested too deeply to read (a spec is at most {MAX_DEPTH} levels)"
        raise SpecError([SpecIssue(path="", message=message)], source) from None
    return parse_any_spec(data, source)
