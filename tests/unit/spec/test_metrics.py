"""Metrics and analysis: each provider's fields, bounds and `compare: stable`, rejections by path."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sluice.contracts.spec import (
    RolloutSpec,
    load_spec,
    parse_spec,
)
from tests.unit.spec.support import (
    COMPARE,
    EXAMPLE,
    ROOT,
    aws_issues,
    compare_rejected,
    example,
    only_issue,
    rejected,
)


def test_unknown_provider() -> None:
    path, msg = only_issue(rejected(lambda d: d["analysis"]["metrics"][1].__setitem__("provider", "datadog")))
    assert path == "analysis.metrics[1]" and "'datadog'" in msg and "prometheus" in msg


def test_metric_without_bound() -> None:
    err = rejected(lambda d: d["analysis"]["metrics"][2].pop("max"))
    path, msg = only_issue(err)
    assert path == "analysis.metrics[2]" and "needs a bound" in msg
    path, msg = only_issue(rejected(lambda d: d["analysis"]["metrics"][0].pop("max")))
    assert path == "analysis.metrics[0]" and "needs `max:`" in msg and "compare: stable" in msg
    path, msg = only_issue(rejected(lambda d: d["analysis"]["metrics"][1].pop("min_success_ratio")))
    assert path == "analysis.metrics[1].min_success_ratio" and "missing" in msg


def test_bad_interval() -> None:
    path, msg = only_issue(rejected(lambda d: d["analysis"].__setitem__("interval", "5 sec")))
    assert path == "analysis.interval" and "not a duration" in msg


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
        (lambda d: d.pop("stable_version"), "stable_version", "needs `stable_version:`"),
    ],
)
def test_compare_fields_are_checked(mutate: Any, where: str, says: str) -> None:
    path, msg = only_issue(compare_rejected(mutate))
    assert path == where and says in msg, (path, msg)


@pytest.mark.parametrize(
    ("mutate", "hint"),
    [
        (lambda m: m.pop("requests"), "needs both `errors` and `requests`"),
        (lambda m: m.__setitem__("value", m["errors"]), "not both"),
        (lambda m: m["errors"].__setitem__("stat", "Average"), "stat must be Sum"),
        (lambda m: m.__setitem__("period", "45s"), "multiple of 60s"),
        (lambda m: [m.pop(k) for k in ("errors", "requests")], "say what to measure"),
    ],
)
def test_cloudwatch_metric_modes(mutate: Any, hint: str) -> None:
    [(path, msg)] = aws_issues("alb", lambda d: mutate(d["analysis"]["metrics"][0]))
    assert path == "analysis.metrics[0]" and hint in msg


def test_cloudwatch_bad_statistic_and_empty_alarms() -> None:
    [(path, msg)] = aws_issues(
        "alb", lambda d: d["analysis"]["metrics"][2]["value"].__setitem__("stat", "median")
    )
    assert path == "analysis.metrics[2].value.stat" and "CloudWatch statistic" in msg
    [(path, msg)] = aws_issues("alb", lambda d: d["analysis"]["metrics"][3].__setitem__("alarms", []))
    assert path == "analysis.metrics[3].alarms"


def test_cloudwatch_compare_stable_in_the_example() -> None:
    spec = parse_spec(example("alb"))
    assert spec.analysis is not None
    metric = spec.analysis.metrics[1]
    assert metric.provider == "cloudwatch" and metric.compare == "stable"
    assert metric.errors is not None
    stable = metric.stable_query(metric.errors)
    assert stable.dimensions == {
        "LoadBalancer": "app/web/50dc6c495c0c9188",
        "TargetGroup": "targetgroup/checkout-v1/3a7e5c1b9d2f4680",
    }
    assert "not worse than stable by more than 10%" in metric.describe()


@pytest.mark.parametrize(
    ("mutate", "hint"),
    [
        (lambda m: m.__setitem__("max", 0.01), "either `max:` or `compare: stable`"),
        (lambda m: m.pop("stable_dimensions"), "needs `stable_dimensions`"),
        (
            lambda m: m.__setitem__(
                "stable_dimensions", {"TargetGroup": "targetgroup/checkout-v2/8f1c3d9e2b4a6071"}
            ),
            "select the same series",
        ),
        (lambda m: m.__setitem__("window", "5m"), "drop `window`"),
        (lambda m: [m.pop(k) for k in ("errors", "requests")], "not `value`"),
        (lambda m: m.pop("compare"), "only applies with `compare: stable`"),
        (lambda m: m["requests"].__setitem__("stat", "Average"), "stat must be Sum"),
    ],
)
def test_cloudwatch_compare_rejections(mutate: Any, hint: str) -> None:
    [(path, msg)] = aws_issues("alb", lambda d: mutate(d["analysis"]["metrics"][1]))
    assert path == "analysis.metrics[1]" and hint in msg


def test_every_metric_describes_its_pass_rule() -> None:
    rollout = parse_spec(EXAMPLE)
    compare = parse_spec(COMPARE)
    alb = parse_spec(example("alb"))
    assert rollout.analysis is not None and compare.analysis is not None and alb.analysis is not None
    assert [m.describe() for m in rollout.analysis.metrics] == [
        "error ratio ≤ 0.01 (at least 20 requests)",
        "≥ 100% of 5 GET http://127.0.0.1:8080/healthz answer 2xx/3xx within 2s",
        "query value ≤ 0.5",
    ]
    assert [m.describe() for m in compare.analysis.metrics] == [
        "5xx rate not worse than stable's by more than 10% (sequential test, alpha 0.01; "
        "at least 200 requests each)",
        "5xx rate not worse than stable's by more than 10% (sequential test, alpha 0.01; "
        "at least 200 requests each)",
        "latency not worse than stable's by more than 20% (sequential test, alpha 0.01; "
        "at least 200 requests each)",
    ]
    assert [m.describe() for m in alb.analysis.metrics][3].startswith("no alarm in ALARM among ")


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("analysis.failure_limit", True, "expected a whole number, got true"),
        ("analysis.inconclusive_limit", "6", 'got "6"; write it without quotes'),
        ("analysis.failure_limit", 1.5, "without a fraction"),
        ("analysis.failure_limit", 10**6, "at most 1000"),
        ("analysis.metrics[0].min_requests", "10", 'expected a whole number, got "10"'),
        ("analysis.metrics[0].max", "0.5", 'expected a number, got "0.5"'),
        ("analysis.metrics[0].max", -0.1, "expected at least 0, got -0.1"),
        ("analysis.metrics[0].max", float("inf"), "expected a finite number"),
        ("analysis.metrics[0].max", float("nan"), "expected a finite number"),
        ("analysis.metrics[1].min_success_ratio", True, "true and false are not numbers"),
        ("analysis.metrics[1].requests", 5.0, "expected a whole number"),
        ("analysis.metrics[2].max", float("-inf"), "expected a finite number"),
        ("analysis.metrics[2].max", "0.5", "write it without quotes"),
    ],
)
def test_numbers_are_strict_and_finite(path: str, value: object, says: str) -> None:
    *parents, last = [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", path) if p]

    def mutate(d: Any) -> None:
        for part in parents:
            d = d[part]
        d[last] = value

    found, msg = only_issue(rejected(mutate))
    assert found == path and says in msg, (found, msg)


@pytest.mark.parametrize("timeout", ["0s", "0ms"])
def test_metric_timeouts_must_be_positive(timeout: str) -> None:
    path, msg = only_issue(rejected(lambda d: d["analysis"]["metrics"][1].__setitem__("timeout", timeout)))
    assert path == "analysis.metrics[1].timeout" and "longer than 0s" in msg
    path, _ = only_issue(rejected(lambda d: d["analysis"]["metrics"][2].__setitem__("timeout", timeout)))
    assert path == "analysis.metrics[2].timeout"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/health z", "http://127.0.0.1:8080/healthz\n", "http://a b/", "http://x/\x00"],
)
def test_urls_refuse_spaces_and_control_characters(url: str) -> None:
    path, msg = only_issue(rejected(lambda d: d["analysis"]["metrics"][1].__setitem__("url", url)))
    assert path == "analysis.metrics[1].url" and "%20" in msg


def test_a_cloudwatch_error_ratio_is_between_0_and_1() -> None:
    [(path, msg)] = aws_issues("alb", lambda d: d["analysis"]["metrics"][0].__setitem__("max", 5))
    assert path == "analysis.metrics[0].max" and "between 0 and 1" in msg


def test_cloudwatch_free_text_refuses_control_characters() -> None:
    [(path, _)] = aws_issues("alb", lambda d: d["analysis"]["metrics"][3]["alarms"].append("high\n"))
    assert path.startswith("analysis.metrics[3].alarms[")
    [(path, _)] = aws_issues(
        "alb",
        lambda d: d["analysis"]["metrics"][0]["errors"].__setitem__("namespace", "AWS/ApplicationELB\n"),
    )
    assert path == "analysis.metrics[0].errors.namespace"
