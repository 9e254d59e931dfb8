"""AWS routers and CloudWatch metrics in the spec: the examples validate, rejections name the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
import yaml
from temporalio.exceptions import ApplicationError

from sluice.activities.aws import _from_client_error, client
from sluice.cli.plan import build_plan, static_details, static_summary
from sluice.contracts import errors
from sluice.contracts.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    name: ROOT / "examples" / f"{name}.yaml" for name in ("alb", "lambda_alias", "apigateway", "route53")
}


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLES[name].read_text())
    return data


def issues(name: str, mutate: Any) -> list[tuple[str, str]]:
    data = copy.deepcopy(example(name))
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return [(i.path, i.message) for i in err.value.issues]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_validates_and_plans(name: str) -> None:
    spec = load_spec(EXAMPLES[name].read_text(), str(EXAMPLES[name]))
    assert spec.router.type == name
    plan = build_plan(spec)
    assert name in static_summary(spec)
    assert spec.router.describe() in static_details(plan, "test")


def test_unknown_router_lists_the_aws_types() -> None:
    [(path, msg)] = issues("alb", lambda d: d["router"].__setitem__("type", "nlb"))
    assert path == "router" and "'nlb'" in msg
    for kind in ("alb", "lambda_alias", "apigateway", "route53"):
        assert kind in msg


@pytest.mark.parametrize(
    ("name", "field", "value", "hint"),
    [
        (
            "alb",
            "listener_arn",
            "arn:aws:elasticloadbalancing:eu-west-1:1:listener/x",
            "not an ALB listener ARN",
        ),
        ("alb", "stable_target_group_arn", "checkout-v1", "not a target group ARN"),
        ("alb", "region", "Ireland", "not an AWS region"),
        ("lambda_alias", "canary_function_version", "$LATEST", "published Lambda version number"),
        ("lambda_alias", "alias", "12", "not a number"),
        ("lambda_alias", "function_name", "checkout api; rm", "Lambda function name or ARN"),
        ("apigateway", "stage", "prod stage", "not a stage name"),
        ("route53", "hosted_zone_id", "zone-1", "not a hosted zone id"),
        ("route53", "record_name", "api..example.com", "not a DNS name"),
    ],
)
def test_router_fields_are_checked_by_pattern(name: str, field: str, value: str, hint: str) -> None:
    [(path, msg)] = issues(name, lambda d: d["router"].__setitem__(field, value))
    assert path == f"router.{field}" and hint in msg and repr(value) in msg


@pytest.mark.parametrize(
    ("name", "mutate", "hint"),
    [
        (
            "alb",
            lambda r: r.__setitem__("canary_target_group_arn", r["stable_target_group_arn"]),
            "same target group",
        ),
        (
            "alb",
            lambda r: r.__setitem__(
                "rule_arn",
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/"
                "0000000000000000/9683b2d02a6cabee",
            ),
            "not a rule of listener_arn",
        ),
        ("lambda_alias", lambda r: r.__setitem__("canary_function_version", "7"), "same version"),
        ("apigateway", lambda r: r.__setitem__("canary_deployment_id", "abc123"), "same deployment"),
        ("route53", lambda r: r.__setitem__("canary_set_identifier", "edge-v1"), "same record"),
        ("route53", lambda r: r.__setitem__("wait_after_change", "1m"), "add `- pause: <TTL>` steps"),
    ],
)
def test_router_consistency(name: str, mutate: Any, hint: str) -> None:
    [(path, msg)] = issues(name, lambda d: mutate(d["router"]))
    assert path == "router" and hint in msg


def test_alb_region_comes_from_the_listener_arn() -> None:
    spec = parse_spec(example("alb"))
    assert spec.router.type == "alb" and spec.router.aws_region == "eu-west-1"


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
    [(path, msg)] = issues("alb", lambda d: mutate(d["analysis"]["metrics"][0]))
    assert path == "analysis.metrics[0]" and hint in msg


def test_cloudwatch_bad_statistic_and_empty_alarms() -> None:
    [(path, msg)] = issues(
        "alb", lambda d: d["analysis"]["metrics"][2]["value"].__setitem__("stat", "median")
    )
    assert path == "analysis.metrics[2].value.stat" and "CloudWatch statistic" in msg
    [(path, msg)] = issues("alb", lambda d: d["analysis"]["metrics"][3].__setitem__("alarms", []))
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
    [(path, msg)] = issues("alb", lambda d: mutate(d["analysis"]["metrics"][1]))
    assert path == "analysis.metrics[1]" and hint in msg


def test_haproxy_counters_need_the_haproxy_router() -> None:
    metric = {"name": "canary-5xx", "provider": "haproxy", "max": 0.01}
    [(path, msg)] = issues("lambda_alias", lambda d: d["analysis"]["metrics"].append(metric))
    assert path == "" and "provider cloudwatch" in msg


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "UpdateAlias",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind", "final"),
    [
        ("AccessDeniedException", 403, errors.ROUTER_REJECTED, True),
        ("ValidationException", 400, errors.ROUTER_CONFIG, True),
        ("ResourceNotFoundException", 404, errors.ROUTER_CONFIG, True),
        ("TooManyRequestsException", 429, errors.ROUTER_UNREACHABLE, False),
        ("ServiceException", 500, errors.ROUTER_UNREACHABLE, False),
        ("ResourceConflictException", 409, errors.ROUTER_UNREACHABLE, False),
    ],
)
def test_aws_errors_map_to_stable_codes(code: str, status: int, kind: str, final: bool) -> None:
    api = client("lambda", "eu-west-1")
    err = _from_client_error(_client_error(code, status), "lambda", "update_alias", api, "here")
    assert isinstance(err, ApplicationError)
    assert (err.type, err.non_retryable) == (kind, final)
    if kind == errors.ROUTER_REJECTED:
        assert "lambda:UpdateAlias" in err.message
