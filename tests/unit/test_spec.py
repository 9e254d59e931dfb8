"""Spec validation: every rejection names the field path and says what to do."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.contracts.durations import format_duration, parse_duration
from sluice.contracts.spec import RolloutSpec, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "rollout.yaml").read_text())


def rejected(mutate: Any) -> SpecError:
    data = copy.deepcopy(EXAMPLE)
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return err.value


def only_issue(err: SpecError) -> tuple[str, str]:
    assert len(err.issues) == 1, err.issues
    return err.issues[0].path, err.issues[0].message


def test_issue_example_validates_as_it_stands() -> None:
    spec = load_spec((ROOT / "examples" / "rollout.yaml").read_text())
    assert spec.service == "checkout" and spec.router.backend == "be_checkout"
    assert [s.describe() for s in spec.steps] == [
        "shift to 10%",
        "bake 30s",
        "shift to 50%",
        "bake 1m",
        "wait for resume or promote",
        "shift to 100%",
    ]
    assert spec.analysis is not None and spec.analysis.interval == timedelta(seconds=5)
    assert [m.provider for m in spec.analysis.metrics] == ["haproxy", "http", "prometheus"]


def test_spec_round_trips_through_json() -> None:
    spec = load_spec((ROOT / "examples" / "rollout.yaml").read_text())
    again = RolloutSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec and again.digest() == spec.digest()


@pytest.mark.parametrize("weight", [-1, 101, 150])
def test_weight_outside_0_100(weight: int) -> None:
    path, msg = only_issue(rejected(lambda d: d["steps"].__setitem__(0, {"set_weight": weight})))
    assert path == "steps[0].set_weight" and "outside 0-100" in msg


def test_no_steps() -> None:
    path, msg = only_issue(rejected(lambda d: d.__setitem__("steps", [])))
    assert path == "steps" and "at least one" in msg


@pytest.mark.parametrize("bad", [30, "30", "30 seconds", "1d", "abc", "-5s"])
def test_duration_that_does_not_parse(bad: object) -> None:
    path, msg = only_issue(rejected(lambda d: d["steps"].__setitem__(1, {"pause": bad})))
    assert path == "steps[1].pause" and "500ms, 30s, 5m, 1h" in msg


def test_bad_interval() -> None:
    path, msg = only_issue(rejected(lambda d: d["analysis"].__setitem__("interval", "5 sec")))
    assert path == "analysis.interval" and "not a duration" in msg


def test_unknown_router_type() -> None:
    path, msg = only_issue(rejected(lambda d: d["router"].__setitem__("type", "nginx")))
    assert path == "router" and "'nginx'" in msg and "haproxy" in msg


def test_unknown_provider() -> None:
    path, msg = only_issue(rejected(lambda d: d["analysis"]["metrics"][1].__setitem__("provider", "datadog")))
    assert path == "analysis.metrics[1]" and "'datadog'" in msg and "prometheus" in msg


@pytest.mark.parametrize("field", ["backend", "stable_server", "canary_server"])
@pytest.mark.parametrize("name", ["be x", "be;shutdown sessions", "be\nset weight x/y 0", "be/srv", ""])
def test_names_that_could_inject_runtime_api_commands(field: str, name: str) -> None:
    path, msg = only_issue(rejected(lambda d: d["router"].__setitem__(field, name)))
    assert path == f"router.{field}" and "letters, digits" in msg


def test_metric_without_bound() -> None:
    err = rejected(lambda d: d["analysis"]["metrics"][2].pop("max"))
    path, msg = only_issue(err)
    assert path == "analysis.metrics[2]" and "needs a bound" in msg
    path, msg = only_issue(rejected(lambda d: d["analysis"]["metrics"][0].pop("max")))
    assert path == "analysis.metrics[0]" and "needs `max:`" in msg and "compare: stable" in msg
    path, msg = only_issue(rejected(lambda d: d["analysis"]["metrics"][1].pop("min_success_ratio")))
    assert path == "analysis.metrics[1].min_success_ratio" and "missing" in msg


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.__setitem__("verison", "v3"), "verison"),
        (lambda d: d["router"].__setitem__("bakend", "x"), "router.bakend"),
        (lambda d: d["steps"].__setitem__(0, {"set_wieght": 10}), "steps[0].set_wieght"),
        (lambda d: d["analysis"].__setitem__("failure_limt", 1), "analysis.failure_limt"),
        (
            lambda d: d["analysis"]["metrics"][1].__setitem__("min_sucess_ratio", 1),
            "analysis.metrics[1].min_sucess_ratio",
        ),
    ],
)
def test_unknown_fields_are_errors(mutate: Any, where: str) -> None:
    path, msg = only_issue(rejected(mutate))
    assert path == where and "unknown field" in msg


def test_step_with_two_kinds() -> None:
    path, msg = only_issue(rejected(lambda d: d["steps"].__setitem__(0, {"set_weight": 10, "pause": "1s"})))
    assert path == "steps[0]" and "exactly one" in msg


def test_bad_service_name_and_duplicate_metric_names() -> None:
    path, msg = only_issue(rejected(lambda d: d.__setitem__("service", "Checkout Service")))
    assert path == "service" and "lowercase" in msg
    err = rejected(lambda d: d["analysis"]["metrics"][1].__setitem__("name", "canary-5xx"))
    assert "unique" in only_issue(err)[1]


def test_same_server_twice() -> None:
    path, msg = only_issue(rejected(lambda d: d["router"].__setitem__("canary_server", "stable")))
    assert path == "router" and "same server" in msg


def test_every_problem_is_listed_at_once() -> None:
    def many(d: dict[str, Any]) -> None:
        d["steps"][0] = {"set_weight": 200}
        d["router"]["type"] = "nginx"
        d["extra"] = 1

    assert {i.path for i in rejected(many).issues} == {"steps[0].set_weight", "router", "extra"}


def test_yaml_errors_and_non_mappings() -> None:
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec("service: [unclosed")
    with pytest.raises(SpecError, match="YAML mapping"):
        load_spec("- just a list")


def test_effective_steps_end_at_100() -> None:
    data = copy.deepcopy(EXAMPLE)
    data["steps"] = [{"set_weight": 10}, {"pause": "1m"}]
    assert [s.describe() for s in parse_spec(data).effective_steps()][-1] == "shift to 100%"
    assert len(parse_spec(EXAMPLE).effective_steps()) == 6


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("PT30S", 30),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (0.5, 30, 90, 3600, 3725.5)] == [
        "500ms",
        "30s",
        "1m30s",
        "1h",
        "1h2m5.5s",
    ]


# --- compare: stable ------------------------------------------------------------------------

COMPARE = yaml.safe_load((ROOT / "examples" / "compare.yaml").read_text())


def compare_rejected(mutate: Any) -> SpecError:
    data = copy.deepcopy(COMPARE)
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return err.value


def test_compare_example_validates_with_defaults_and_round_trips() -> None:
    spec = load_spec((ROOT / "examples" / "compare.yaml").read_text())
    assert spec.analysis is not None
    haproxy, prom_errors, latency = spec.analysis.metrics
    assert haproxy.provider == "haproxy" and haproxy.compare == "stable" and haproxy.max is None
    assert (haproxy.alpha, haproxy.tolerance, haproxy.min_requests) == (0.01, 0.1, 200)
    assert prom_errors.provider == "prometheus" and not prom_errors.compares_latency
    assert latency.provider == "prometheus" and latency.compares_latency and latency.tolerance == 0.2
    assert RolloutSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize(
    ("mutate", "where", "says"),
    [
        (lambda d: d["analysis"]["metrics"][0].pop("compare"), "analysis.metrics[0]", "needs `max:`"),
        (lambda d: d["analysis"]["metrics"][0].__setitem__("max", 0.01), "analysis.metrics[0]", "not both"),
        (lambda d: d["analysis"]["metrics"][0].__setitem__("alpha", 0.5), "analysis.metrics[0].alpha", "0.2"),
        (
            lambda d: d["analysis"]["metrics"][0].__setitem__("tolerance", -1),
            "analysis.metrics[0].tolerance",
            "0",
        ),
        (
            lambda d: d["analysis"]["metrics"][1].pop("errors"),
            "analysis.metrics[1]",
            "needs `requests` and `errors`",
        ),
        (
            lambda d: d["analysis"]["metrics"][1].__setitem__("max", 1),
            "analysis.metrics[1]",
            "instead of `query`",
        ),
        (
            lambda d: d["analysis"]["metrics"][2].__setitem__("errors", "x"),
            "analysis.metrics[2]",
            "not both",
        ),
        (
            lambda d: d["analysis"]["metrics"][2].pop("compare"),
            "analysis.metrics[2]",
            "only apply with `compare",
        ),
        (lambda d: d.pop("stable_version"), "", "needs `stable_version:`"),
    ],
)
def test_compare_fields_are_checked(mutate: Any, where: str, says: str) -> None:
    path, msg = only_issue(compare_rejected(mutate))
    assert path == where and says in msg, (path, msg)
