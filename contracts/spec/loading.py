"""Loading a spec from YAML text or a mapping, with every problem reported as a SpecError."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from sluice.contracts.spec.errors import SpecError, SpecIssue, issues_from
from sluice.contracts.spec.overrides import apply_overrides
from sluice.contracts.spec.rollout import AnySpec, RingRolloutSpec, RolloutSpec


def parse_spec(data: object, source: str = "spec") -> RolloutSpec:
    """Validate a mapping of a single-router rollout; raise SpecError listing every problem."""
    spec = parse_any_spec(data, source)
    if isinstance(spec, RingRolloutSpec):
        raise SpecError([SpecIssue(path="rings", message="expected a spec without rings here")], source)
    return spec


def parse_any_spec(data: object, source: str = "spec") -> AnySpec:
    """Validate a mapping: a spec with `rings:` is a ring rollout, any other a single rollout."""
    return _validate(data, source, None)


def _validate(
    data: object, source: str, document: _Document | None, set_by: Mapping[str, str] | None = None
) -> AnySpec:
    """`parse_any_spec`, with the YAML document's places and scalars for the issues when known, and
    the `--set` that gave a field (`set_by`: path -> `--set KEY=VALUE`)."""
    if not isinstance(data, dict):
        raise SpecError(
            [SpecIssue(path="", message="a spec is a YAML mapping with service, version, router, steps")],
            source,
        )
    model: type[RolloutSpec] | type[RingRolloutSpec] = RingRolloutSpec if "rings" in data else RolloutSpec
    try:
        return model.model_validate(data)
    except ValidationError as err:
        set_by = set_by or {}
        scalars = {} if document is None else _unset(document.scalars, set_by)
        issues = []
        for issue in issues_from(err, model, scalars):
            if issue.path in set_by:  # not where the file writes it: the command line gave it
                issue = issue.model_copy(update={"message": f"{issue.message} (set by {set_by[issue.path]})"})
            elif document is not None:
                issue = document.place(issue)
            issues.append(issue)
        raise SpecError(issues, source) from None


def _unset(scalars: dict[str, str], set_by: Mapping[str, str]) -> dict[str, str]:
    return {path: text for path, text in scalars.items() if path not in set_by}


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
    than MAX_VALUES values or refer to themselves (before anything walks the expansion). It also
    reads the composed nodes into `document`: duplicate keys, and each path's line and scalar text."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.name = source  # marks (and so syntax errors) name the file, not "<unicode string>"
        self._depth = 0
        self.document = _Document()

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
        self.document = _read_nodes(node, self.name)
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


def _where(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown place"


@dataclass
class _Document:
    """What the loader learnt from the nodes: duplicate keys, where each path is written, and the
    text of the numbers and booleans (YAML reads `1.10` as 1.1, so a quote hint must quote the text)."""

    duplicates: list[SpecIssue] = field(default_factory=list)
    places: dict[str, yaml.Mark] = field(default_factory=dict)
    scalars: dict[str, str] = field(default_factory=dict)

    def place(self, issue: SpecIssue) -> SpecIssue:
        """`issue` with the line and column where its field is written, if it is."""
        mark = self.places.get(issue.path)
        if mark is None or issue.line is not None:
            return issue
        return issue.model_copy(update={"line": mark.line + 1, "column": mark.column + 1})


_PLAIN_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}


def _read_nodes(root: yaml.Node, source: str) -> _Document:
    """Walk the composed nodes (before anything is constructed, so paths and lines are known):
    every key written twice in one mapping, and each path's place and plain scalar.

    YAML parsers keep the last of two equal keys, so a second `steps:` block would silently
    replace the first. Keys merged in with `<<: *anchor` may be overridden (that is what merging
    is for): only keys written in the mapping itself count.
    """
    doc = _Document()
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str, yaml.Mark]] = [(root, "", root.start_mark)]
    while stack:
        node, path, mark = stack.pop()
        doc.places.setdefault(path, mark)
        if isinstance(node, yaml.ScalarNode) and node.tag in _PLAIN_TAGS:
            doc.scalars.setdefault(path, str(node.value))
        if id(node) in seen_nodes:  # an aliased value is walked (and reported) once
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            items = list(enumerate(node.value))
            stack.extend((child, f"{path}[{i}]", child.start_mark) for i, child in reversed(items))
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict[tuple[str, str], yaml.Node] = {}
        children: list[tuple[yaml.Node, str, yaml.Mark]] = []
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            where = f"{path}.{key.value}" if path else str(key.value)
            earlier = first.setdefault((key.tag, key.value), key)
            if earlier is not key:
                doc.duplicates.append(
                    SpecIssue(
                        path=where,
                        message=(
                            f"duplicate key at {source}, {_where(key.start_mark)} (first at "
                            f"{_where(earlier.start_mark)}); YAML would keep only the last one, "
                            "so merge the two or delete one"
                        ),
                        line=key.start_mark.line + 1,
                        column=key.start_mark.column + 1,
                    )
                )
            children.append((value, where, key.start_mark))
        stack.extend(reversed(children))
    return doc


def _yaml_error(err: yaml.YAMLError, source: str) -> str:
    """`not valid YAML at rollout.yaml, line 3, column 1: expected ... (while parsing ... at line 2, ...)`."""
    if isinstance(err, yaml.reader.ReaderError):
        char = err.character if isinstance(err.character, int) else ord(err.character[:1] or b"\0")
        return (
            f"not valid YAML in {source}: the control character U+{char:04X} (at character "
            f"{err.position + 1}) is not allowed; a spec is text"
        )
    if not isinstance(err, yaml.MarkedYAMLError) or err.problem_mark is None:
        return f"not valid YAML in {source}: {err}"
    text = f"not valid YAML at {source}, {_where(err.problem_mark)}: {err.problem}"
    if err.context:
        text += f" ({err.context} at {_where(err.context_mark)})"
    return text


def load_spec(text: str, source: str = "spec", overrides: Sequence[str] = ()) -> AnySpec:
    """Parse YAML text into a validated spec; raise SpecError (never a traceback-worthy error).

    `overrides` are `KEY=VALUE` settings of simple fields applied before validation (`--set`,
    see `apply_overrides`); an issue of a field they set says so.

    Hostile documents (over a megabyte, nested deeper than MAX_DEPTH, alias bombs) are refused
    with a message before they are expanded or validated.
    """
    if len(text) > MAX_CHARACTERS:
        message = f"the document is too large ({len(text)} characters; a spec is at most {MAX_CHARACTERS})"
        raise SpecError([SpecIssue(path="", message=message)], source)
    try:
        loader = _SpecLoader(text, source)  # the reader refuses unprintable characters at once
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except _Refused as err:
        raise SpecError([SpecIssue(path="", message=f"not a spec: {err}")], source) from None
    except yaml.YAMLError as err:
        raise SpecError([SpecIssue(path="", message=_yaml_error(err, source))], source) from None
    except RecursionError:
        message = f"not a spec: nested too deeply to read (a spec is at most {MAX_DEPTH} levels)"
        raise SpecError([SpecIssue(path="", message=message)], source) from None
    document = loader.document
    data, problems = apply_overrides(data, overrides)
    problems = [*document.duplicates, *problems]
    try:
        spec = _validate(data, source, document, _set_keys(overrides))
    except SpecError as err:
        # Every other problem is listed in the same pass as duplicates and bad `--set`s.
        raise SpecError([*problems, *err.issues], source) from None
    if problems:
        raise SpecError(problems, source)
    return spec


def _set_keys(overrides: Sequence[str]) -> dict[str, str]:
    """`{"version": "--set version=v3"}`: how each path given by `--set` is named in its issues."""
    return {item.partition("=")[0].strip(): f"--set {item}" for item in overrides if "=" in item}
