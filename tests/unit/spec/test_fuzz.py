"""Fuzz `sluice validate` with specs mutated from the examples: invalid ones exit 2 naming the field.

Deterministic (seeded) and in-process (`run_cli`). Mutants come in two kinds:
- *known invalid*: a mutation the spec rules must refuse (a bool or string for a number, a
  newline after a name, an infinite ratio, a zero timeout, an unbounded duration, too many steps,
  steps after 100%, hostile YAML...): each must exit 2, every issue with a field path;
- *random*: type swaps, boundary numbers, deletions and duplications anywhere in the tree, whose
  validity is not known in advance: each must exit 0 or 2, never crash; an accepted one must hold
  the invariants every valid spec has (it survives the JSON round trip Temporal puts it through,
  its names hold no whitespace, its numbers are finite).

Run as a script (`python tests/unit/spec/test_fuzz.py`) for the counts as a table.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SEED = 20261203
RANDOM_PER_EXAMPLE = 30

NAME_KEYS = {
    "service",
    "version",
    "stable_version",
    "backend",
    "stable_server",
    "canary_server",
    "name",
    "listener_arn",
    "rule_arn",
    "stable_target_group_arn",
    "canary_target_group_arn",
    "function_name",
    "alias",
    "stable_function_version",
    "canary_function_version",
    "rest_api_id",
    "stage",
    "stable_deployment_id",
    "canary_deployment_id",
    "hosted_zone_id",
    "record_name",
    "stable_set_identifier",
    "canary_set_identifier",
    "region",
    "admin_socket",
    "url",
    "address",
    "url_env",
    "namespace",
    "stat",
}
"""Keys whose values are names or addresses: a trailing newline or an inner space is never valid."""
INNER_SPACE_OK = {"stable_set_identifier", "canary_set_identifier", "namespace"}
"""Route 53 set identifiers and CloudWatch namespaces may hold a space (not at either end)."""
INT_KEYS = {"set_weight", "failure_limit", "inconclusive_limit", "min_requests", "requests"}
RATIO_KEYS = {"min_success_ratio", "alpha", "tolerance"}
"""Floats in a closed range starting at 0 (`max` of an haproxy metric too, handled apart)."""
DURATION_KEYS = {
    "pause",
    "interval",
    "timeout",
    "period",
    "window",
    "soak",
    "post_promotion",
    "deploy_time",
    "bake_time",
    "wait_after_change",
    "scale_down_delay",
    "duration",
}
POSITIVE_DURATION_KEYS = {"timeout", "interval", "period", "soak", "post_promotion"}
SWAP_VALUES: list[Any] = [
    True,
    False,
    None,
    "10",
    "0.5",
    10,
    0,
    -1,
    0.5,
    -0.1,
    1.0000001,
    10**21,
    float("inf"),
    float("nan"),
    [],
    {},
    "x" * 300,
    "checkout\n",
    "a b",
    "99999999999h",
    "0s",
]

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Mutant:
    """One mutated spec: its YAML text, what was done, and whether it must be refused."""

    label: str
    text: str
    must_fail: bool


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def _walk(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


def _set(data: Any, path: Path_, value: Any) -> Any:
    out = copy.deepcopy(data)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _delete(data: Any, path: Path_) -> Any:
    out = copy.deepcopy(data)
    node = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**6)


def _in_metric(data: Any, path: Path_, provider: str) -> bool:
    node = data
    for part in path[:-1]:
        node = node[part]
    return isinstance(node, dict) and node.get("provider") == provider


def known_invalid(name: str, data: dict[str, Any]) -> Iterator[Mutant]:
    """Mutations the rules must refuse, applied wherever the example has the field."""
    for path, value in _walk(data):
        if not path or not isinstance(path[-1], str):
            continue
        key = path[-1]
        where = f"{name}:{'.'.join(map(str, path))}"
        if key in NAME_KEYS and isinstance(value, str):
            yield Mutant(f"{where} trailing newline", _dump(_set(data, path, value + "\n")), True)
            yield Mutant(f"{where} leading newline", _dump(_set(data, path, "\n" + value)), True)
            yield Mutant(f"{where} NUL", _dump(_set(data, path, value + "\x00")), True)
            if key not in INNER_SPACE_OK:
                yield Mutant(
                    f"{where} inner space", _dump(_set(data, path, value[:3] + " " + value[3:])), True
                )
        if key in INT_KEYS and isinstance(value, int) and not isinstance(value, bool):
            for bad in (True, str(value), float(value) + 0.5, 10**21, -1):
                yield Mutant(f"{where} = {bad!r}", _dump(_set(data, path, bad)), True)
        ratio = key in RATIO_KEYS or (key == "max" and _in_metric(data, path, "haproxy"))
        if ratio and isinstance(value, int | float) and not isinstance(value, bool):
            for bad in (True, str(value), -0.1, 1e9, float("inf"), float("nan")):
                yield Mutant(f"{where} = {bad!r}", _dump(_set(data, path, bad)), True)
        if key in ("max", "min") and isinstance(value, int | float) and not isinstance(value, bool):
            for bad in (True, str(value), float("inf"), float("-inf"), float("nan")):
                yield Mutant(f"{where} = {bad!r}", _dump(_set(data, path, bad)), True)
        if key in DURATION_KEYS and isinstance(value, str):
            for bad in ("99999999999h", "1" * 21 + "s", "1" * 400 + "ms", "-1s"):
                yield Mutant(f"{where} = {bad!r}", _dump(_set(data, path, bad)), True)
            if key in POSITIVE_DURATION_KEYS:
                for bad in ("0s", "0ms"):
                    yield Mutant(f"{where} = {bad!r}", _dump(_set(data, path, bad)), True)
        if key in ("url", "address") and isinstance(value, str):
            yield Mutant(f"{where} space in path", _dump(_set(data, path, value + "/a b")), True)
    steps = data.get("steps")
    if isinstance(steps, list) and steps and data.get("strategy", "canary") == "canary":
        yield Mutant(f"{name}: 1001 steps", _dump({**data, "steps": steps * (1001 // len(steps) + 1)}), True)
        yield Mutant(f"{name}: only a pause", _dump({**data, "steps": [{"pause": "30s"}]}), True)
        yield Mutant(f"{name}: only weight 0", _dump({**data, "steps": [{"set_weight": 0}]}), True)
        yield Mutant(f"{name}: pause: null", _dump({**data, "steps": [*steps[:1], {"pause": None}]}), True)
        full = {**data, "steps": [{"set_weight": 10}, {"set_weight": 100}, {"pause": "1m"}]}
        yield Mutant(f"{name}: a bake after 100%", _dump(full), True)
        back = {**data, "steps": [{"set_weight": 100}, {"set_weight": 50}]}
        yield Mutant(f"{name}: a shift back after 100%", _dump(back), True)


def hostile_yaml() -> Iterator[Mutant]:
    """Documents no spec can be: deep nesting, alias bombs, binary, huge."""
    yield Mutant("nested 2000 deep (flow)", "service: " + "[" * 2000 + "]" * 2000 + "\n", True)
    deep = "".join("  " * i + "a:\n" for i in range(2000)) + "  " * 2000 + "b: 1\n"
    yield Mutant("nested 2000 deep (block)", deep, True)
    bomb = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    bomb += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    yield Mutant("alias bomb (9^9)", "\n".join(bomb) + "\nservice: *a8\n", True)
    yield Mutant("binary", "".join(chr(c) for c in random.Random(SEED).choices(range(256), k=512)), True)
    yield Mutant("NUL in the document", "service: checkout\x00\nversion: v2\n", True)
    yield Mutant("a scalar", "42\n", True)
    yield Mutant("empty", "", True)
    yield Mutant("python tag", "service: !!python/object/apply:os.system ['true']\n", True)
    yield Mutant("2 MB of steps", "steps:\n" + "  - set_weight: 10\n" * 110_000, True)


def random_mutants(name: str, data: dict[str, Any], rng: random.Random) -> Iterator[Mutant]:
    """Type swaps, boundary numbers, deletions and duplications at random places."""
    paths = [p for p, _ in _walk(data) if p]
    for n in range(RANDOM_PER_EXAMPLE):
        path = rng.choice(paths)
        where = f"{name}:{'.'.join(map(str, path))}"
        op = rng.choice(("swap", "swap", "delete", "duplicate", "newline"))
        if op == "swap":
            value = rng.choice(SWAP_VALUES)
            yield Mutant(f"#{n} {where} = {value!r}", _dump(_set(data, path, value)), False)
        elif op == "delete":
            yield Mutant(f"#{n} {where} deleted", _dump(_delete(data, path)), False)
        elif op == "newline":
            node = data
            for part in path:
                node = node[part]
            if isinstance(node, str):
                yield Mutant(f"#{n} {where} + newline", _dump(_set(data, path, node + "\n")), False)
        else:
            parent_path = path[:-1]
            parent = data
            for part in parent_path:
                parent = parent[part]
            if isinstance(parent, list):
                doubled = [*parent, copy.deepcopy(parent[path[-1]])]
                mutated = _set(data, parent_path, doubled) if parent_path else doubled
                yield Mutant(f"#{n} {where} duplicated", _dump(mutated), False)


def mutants() -> list[Mutant]:
    """Every mutant, in a fixed order; a known-invalid mutation of a field several examples share
    (`router.backend` + newline) is kept once, from the first example that has it."""
    rng = random.Random(SEED)
    out: list[Mutant] = []
    seen: set[str] = set()
    for path in EXAMPLES:
        data = yaml.safe_load(path.read_text())
        for mutant in known_invalid(path.stem, data):
            what = mutant.label.split(":", 1)[1]
            if what not in seen:
                seen.add(what)
                out.append(mutant)
        out += random_mutants(path.stem, data, rng)
    out += hostile_yaml()
    return out


def run_validate(text: str) -> Outcome:
    """`sluice validate -f FILE -o json` in-process."""
    from sluice.cli.main import run_cli

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rollout.yaml"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code, _ = run_cli(["validate", "-f", str(path), "-o", "json"])
    return Outcome(code, out.getvalue(), err.getvalue())


WHOLE_DOCUMENT = ("not valid YAML", "not a spec:", "a spec is a YAML mapping", "too large", "cannot read")
"""Issues about the whole document, which have no field to name."""


def crashed(outcome: Outcome) -> bool:
    return outcome.code not in (0, 2) or "Traceback" in outcome.stderr or "internal error" in outcome.stderr


def unlocated(outcome: Outcome) -> list[dict[str, str]]:
    """Issues of a refusal that name no field (and are not about the whole document)."""
    try:
        issues: list[dict[str, str]] = json.loads(outcome.stdout)["issues"]
    except (ValueError, KeyError):
        return [{"path": "", "message": outcome.stderr.strip() or "no issues printed"}]
    return [i for i in issues if not i["path"] and not any(w in i["message"] for w in WHOLE_DOCUMENT)]


def invariant_broken(text: str) -> str | None:
    """For an accepted spec: what a valid spec must never be, if this one is it."""
    from sluice.contracts.spec import load_spec

    spec = load_spec(text)
    data = spec.model_dump(mode="json")
    try:
        again = type(spec).model_validate_json(json.dumps(data))
    except Exception as err:  # the data converter would fail the same way in the workflow
        return f"does not survive the JSON round trip: {str(err)[:200]}"
    if again != spec:
        return "changes in the JSON round trip"
    for path, value in _walk(data):
        key = path[-1] if path else None
        if isinstance(value, float) and not math.isfinite(value):
            return f"{path}: not finite"
        spaced = isinstance(value, str) and any(c.isspace() or ord(c) < 32 for c in value)
        if (
            spaced
            and key in NAME_KEYS
            and (key not in INNER_SPACE_OK or value != value.strip().replace("\x00", ""))
        ):
            return f"{path}: whitespace in a name"
    if len(spec.effective_steps()) > 1000:
        return "more than 1000 steps"
    return None


@dataclass
class Tally:
    generated: int = 0
    known_invalid: int = 0
    known_invalid_accepted: int = 0
    random_accepted: int = 0
    random_refused: int = 0
    accepted_breaking_an_invariant: int = 0
    crashed: int = 0
    refused_without_a_path: int = 0


def fuzz(report: Callable[[str], None] | None = None) -> Tally:
    tally = Tally()
    for mutant in mutants():
        tally.generated += 1
        tally.known_invalid += mutant.must_fail
        outcome = run_validate(mutant.text)
        problem = ""
        if crashed(outcome):
            tally.crashed += 1
            problem = f"crashed (exit {outcome.code}): {outcome.stderr.strip()[-300:]}"
        elif outcome.code == 0:
            broken = invariant_broken(mutant.text)
            if mutant.must_fail:
                tally.known_invalid_accepted += 1
                problem = "accepted"
            else:
                tally.random_accepted += 1
            if broken:
                tally.accepted_breaking_an_invariant += 1
                problem = f"accepted, but {broken}"
        else:
            tally.random_refused += not mutant.must_fail
            missing = unlocated(outcome)
            if missing:
                tally.refused_without_a_path += 1
                problem = f"refused without a field path: {missing[0]['message'][:200]}"
        if problem and report is not None:
            report(f"{mutant.label[:120]!r}: {problem}")
    return tally


def test_the_examples_themselves_validate() -> None:
    outcomes = {path.stem: run_validate(path.read_text()) for path in EXAMPLES}
    assert {name: o.code for name, o in outcomes.items()} == {path.stem: 0 for path in EXAMPLES}, outcomes


def test_fuzzed_specs_are_refused_with_a_path_or_accepted_whole() -> None:
    problems: list[str] = []
    tally = fuzz(problems.append)
    assert tally.generated >= 600 and tally.known_invalid >= 350, tally
    assert tally.random_accepted > 0 and tally.random_refused > 0, tally
    assert problems == [], (
        f"{len(problems)} of {tally.generated} mutants went wrong ({tally}):\n" + "\n".join(problems[:40])
    )


if __name__ == "__main__":
    found = fuzz(print)
    for field, value in vars(found).items():
        print(f"{field:34} {value}")
