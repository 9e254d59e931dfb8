"""Router sections: names that reach a runtime API, ARN patterns, and two distinct targets."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.contracts.plan import build_plan, static_details, static_summary
from sluice.contracts.spec import (
    load_spec,
    parse_spec,
)
from tests.unit.spec.support import (
    AWS_EXAMPLES,
    EXAMPLE,
    PROXY_EXAMPLES,
    aws_issues,
    example,
    only_issue,
    rejected,
)


def test_unknown_router_type() -> None:
    path, msg = only_issue(rejected(lambda d: d["router"].__setitem__("type", "envoy")))
    assert path == "router" and "'envoy'" in msg and "haproxy" in msg


@pytest.mark.parametrize("field", ["backend", "stable_server", "canary_server"])
@pytest.mark.parametrize("name", ["be x", "be;shutdown sessions", "be\nset weight x/y 0", "be/srv", ""])
def test_names_that_could_inject_runtime_api_commands(field: str, name: str) -> None:
    path, msg = only_issue(rejected(lambda d: d["router"].__setitem__(field, name)))
    assert path == f"router.{field}" and "letters, digits" in msg


def test_same_server_twice() -> None:
    path, msg = only_issue(rejected(lambda d: d["router"].__setitem__("canary_server", "stable")))
    assert path == "router" and "same server" in msg


@pytest.mark.parametrize("name", sorted(AWS_EXAMPLES))
def test_each_example_validates_and_plans(name: str) -> None:
    spec = load_spec(AWS_EXAMPLES[name].read_text(), str(AWS_EXAMPLES[name]))
    assert spec.router.type == name
    plan = build_plan(spec)
    assert name in static_summary(spec)
    assert spec.router.describe() in static_details(plan, "test")


def test_unknown_router_lists_the_aws_types() -> None:
    [(path, msg)] = aws_issues("alb", lambda d: d["router"].__setitem__("type", "nlb"))
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
    [(path, msg)] = aws_issues(name, lambda d: d["router"].__setitem__(field, value))
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
    [(path, msg)] = aws_issues(name, lambda d: mutate(d["router"]))
    assert path == "router" and hint in msg


def test_alb_region_comes_from_the_listener_arn() -> None:
    spec = parse_spec(example("alb"))
    assert spec.router.type == "alb" and spec.router.aws_region == "eu-west-1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("backend", "canary\n"),
        ("backend", "be_checkout\n"),
        ("stable_server", "\nstable"),
        ("canary_server", "canary\n"),
        ("admin_socket", "/run/haproxy/admin.sock\n"),
        ("admin_socket", "/run/haproxy/admin sock"),
        ("admin_socket", "127.0.0.1:99999"),
    ],
)
def test_a_newline_or_space_never_reaches_the_runtime_api(field: str, value: str) -> None:
    path, msg = only_issue(rejected(lambda d: d["router"].__setitem__(field, value)))
    assert path == f"router.{field}" and repr(value) in msg


def test_admin_socket_takes_one_address_or_a_list() -> None:
    pair = ["/run/haproxy-a/admin.sock", "10.0.0.2:9999"]
    spec = parse_spec({**EXAMPLE, "router": {**EXAMPLE["router"], "admin_socket": pair}})
    assert spec.router.admin_socket == pair
    for bad, hint in (([], "empty list"), (["/run/a.sock", "nowhere"], "'nowhere'")):
        path, msg = only_issue(rejected(lambda d, bad=bad: d["router"].__setitem__("admin_socket", bad)))
        assert path == "router.admin_socket" and hint in msg


@pytest.mark.parametrize("timeout", ["0s", "0ms"])
def test_router_timeout_must_be_positive(timeout: str) -> None:
    path, msg = only_issue(rejected(lambda d: d["router"].__setitem__("timeout", timeout)))
    assert path == "router.timeout" and "longer than 0s" in msg


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("alb", "listener_arn"),
        ("alb", "stable_target_group_arn"),
        ("lambda_alias", "alias"),
        ("lambda_alias", "canary_function_version"),
        ("apigateway", "stage"),
        ("route53", "record_name"),
        ("route53", "canary_set_identifier"),
        ("route53", "hosted_zone_id"),
    ],
)
def test_aws_names_are_matched_to_the_true_end(name: str, field: str) -> None:
    [(path, msg)] = aws_issues(name, lambda d: d["router"].__setitem__(field, d["router"][field] + "\n"))
    assert path == f"router.{field}" and "\\n" in msg


# --- NGINX, Traefik, Caddy ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROXY_EXAMPLES))
def test_each_proxy_example_validates_and_plans(name: str) -> None:
    spec = load_spec(PROXY_EXAMPLES[name].read_text(), str(PROXY_EXAMPLES[name]))
    assert spec.router.type == name
    assert name in static_summary(spec)
    assert spec.router.describe() in static_details(build_plan(spec), "test")


@pytest.mark.parametrize(
    ("name", "field", "value", "hint"),
    [
        ("nginx", "upstream_file", "sluice/checkout.conf", "an absolute path"),
        ("nginx", "upstream_file", "/etc/nginx/a b.conf", "an absolute path"),
        ("nginx", "config", "/etc/nginx/nginx.conf;", "an absolute path"),
        ("nginx", "canary_server", "10.0.0.12:8080 backup", "an NGINX server address"),
        ("nginx", "canary_server", "10.0.0.12:8080;server 1.2.3.4:80", "an NGINX server address"),
        ("nginx", "stable_server", "10.0.0.11:0", "an NGINX server address"),
        ("nginx", "stable_server", "10.0.0.11:65536", "port above 65535"),
        ("nginx", "binary", "nginx -g", "a program name"),
        ("traefik", "api_url", "127.0.0.1:8080", "not an http(s) URL"),
        ("traefik", "service", "checkout@file", "letters, digits"),
        ("traefik", "canary_service", "checkout v2", "a Traefik service name"),
        ("traefik", "dynamic_file", "dynamic.yaml", "an absolute path"),
        ("caddy", "admin_address", "unix//run/caddy.sock", "host:port"),
        ("caddy", "canary_upstream", "http://10.0.0.12:8080", "host:port"),
        ("caddy", "handler_id", "checkout proxy", "letters, digits"),
    ],
)
def test_proxy_router_fields_are_checked(name: str, field: str, value: str, hint: str) -> None:
    [(path, msg)] = aws_issues(name, lambda d: d["router"].__setitem__(field, value))
    assert path == f"router.{field}" and hint in msg


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("nginx", "upstream_file"),
        ("nginx", "canary_server"),
        ("traefik", "service"),
        ("traefik", "stable_service"),
        ("caddy", "handler_id"),
        ("caddy", "canary_upstream"),
    ],
)
def test_proxy_names_are_matched_to_the_true_end(name: str, field: str) -> None:
    [(path, msg)] = aws_issues(name, lambda d: d["router"].__setitem__(field, d["router"][field] + "\n"))
    assert path == f"router.{field}" and "\\n" in msg


@pytest.mark.parametrize("name", sorted(PROXY_EXAMPLES))
@pytest.mark.parametrize(("timeout", "hint"), [("0s", "longer than 0s"), ("21s", "at most 20s")])
def test_proxy_router_timeouts_are_bounded(name: str, timeout: str, hint: str) -> None:
    [(path, msg)] = aws_issues(name, lambda d: d["router"].__setitem__("timeout", timeout))
    assert path == "router.timeout" and hint in msg


@pytest.mark.parametrize(
    ("name", "mutate", "path", "hint"),
    [
        ("nginx", lambda r: r.__setitem__("canary_server", r["stable_server"]), "router", "same server"),
        (
            "nginx",
            lambda r: r.__setitem__("upstream_file", r["config"]),
            "router.upstream_file",
            "main config",
        ),
        (
            "traefik",
            lambda r: r.__setitem__("canary_service", r["stable_service"] + "@file"),
            "router",
            "same service",
        ),
        ("traefik", lambda r: r.__setitem__("service", r["stable_service"]), "router.service", "cannot also"),
        (
            "caddy",
            lambda r: r.__setitem__("canary_upstream", r["stable_upstream"]),
            "router",
            "same upstream",
        ),
    ],
)
def test_proxy_router_consistency(name: str, mutate: Any, path: str, hint: str) -> None:
    [(where, msg)] = aws_issues(name, lambda d: mutate(d["router"]))
    assert where == path and hint in msg


@pytest.mark.parametrize("name", sorted(PROXY_EXAMPLES))
def test_haproxy_counters_need_haproxy_and_the_hint_fits_the_proxy(name: str) -> None:
    metric = {"name": "router-5xx", "provider": "haproxy", "max": 0.01}
    [(path, msg)] = aws_issues(name, lambda d: d["analysis"]["metrics"].append(metric))
    assert path.endswith(".provider") and "provider http or prometheus" in msg
