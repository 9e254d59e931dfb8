"""Traffic target keys: what each router drives, so that one running rollout owns each target."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sluice.contracts.spec import (
    ALBRouter,
    ApiGatewayRouter,
    HAProxyRouter,
    LambdaAliasRouter,
    RingRolloutSpec,
    RolloutSpec,
    Route53Router,
    parse_any_spec,
    parse_spec,
)
from tests.unit.spec.support import AWS_EXAMPLES, EXAMPLE, ROOT

LISTENER = (
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
)
RULE = (
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/"
    "f2f7dc8efc522ab2/9683b2d02a6cabee"
)
TG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/checkout-v{}/73e2d6bc24d8a06{}"


def haproxy(**fields: Any) -> HAProxyRouter:
    data = {"type": "haproxy", "admin_socket": "/run/haproxy/admin.sock", "backend": "be_checkout"}
    data |= {"stable_server": "stable", "canary_server": "canary"} | fields
    return HAProxyRouter.model_validate(data)


def test_haproxy_key_is_each_socket_with_the_backend_whatever_the_servers_or_service() -> None:
    assert haproxy().traffic_targets() == ("haproxy:/run/haproxy/admin.sock#be_checkout",)
    # Other server names on the same backend are the same traffic (the sides may be swapped).
    swapped = haproxy(stable_server="canary", canary_server="stable", timeout="9s")
    assert swapped.traffic_targets() == haproxy().traffic_targets()
    assert haproxy(backend="be_other").traffic_targets() != haproxy().traffic_targets()


def test_haproxy_key_of_several_instances_has_one_key_each_in_order_and_lower_case_hosts() -> None:
    pair = haproxy(admin_socket=["LB-2.internal:9999", "/run/a.sock", "lb-1.internal:9999"])
    assert pair.traffic_targets() == (
        "haproxy:/run/a.sock#be_checkout",
        "haproxy:lb-1.internal:9999#be_checkout",
        "haproxy:lb-2.internal:9999#be_checkout",
    )
    # One instance shared with an HA pair is enough to collide.
    single = haproxy(admin_socket="lb-2.internal:9999")
    assert set(single.traffic_targets()) & set(pair.traffic_targets())


def test_alb_key_is_the_rule_or_the_listeners_default_action() -> None:
    base = {
        "type": "alb",
        "listener_arn": LISTENER,
        "stable_target_group_arn": TG.format(1, 1),
        "canary_target_group_arn": TG.format(2, 2),
    }
    default = ALBRouter.model_validate(base)
    ruled = ALBRouter.model_validate({**base, "rule_arn": RULE})
    assert default.traffic_targets() == (f"alb:{LISTENER}#default",)
    assert ruled.traffic_targets() == (f"alb:{RULE}",)
    other_groups = ALBRouter.model_validate(
        {**base, "stable_target_group_arn": TG.format(3, 3), "canary_target_group_arn": TG.format(4, 4)}
    )
    assert other_groups.traffic_targets() == default.traffic_targets()


def test_lambda_key_is_function_and_alias_a_name_and_its_arn_alike() -> None:
    def alias(function: str, name: str = "live", **more: str) -> LambdaAliasRouter:
        return LambdaAliasRouter.model_validate(
            {
                "type": "lambda_alias",
                "function_name": function,
                "alias": name,
                "stable_function_version": "7",
                "canary_function_version": "8",
                **more,
            }
        )

    by_name = alias("checkout-api")
    assert by_name.traffic_targets() == ("lambda_alias:checkout-api:live",)
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:checkout-api"
    assert alias(arn).traffic_targets() == by_name.traffic_targets()
    assert alias("checkout-api", region="us-east-1").traffic_targets() == by_name.traffic_targets()
    assert alias("checkout-api", "beta").traffic_targets() != by_name.traffic_targets()


def test_apigateway_key_is_api_and_stage() -> None:
    def stage(name: str, canary: str = "def456") -> ApiGatewayRouter:
        return ApiGatewayRouter.model_validate(
            {
                "type": "apigateway",
                "rest_api_id": "a1b2c3d4e5",
                "stage": name,
                "stable_deployment_id": "abc123",
                "canary_deployment_id": canary,
            }
        )

    assert stage("prod").traffic_targets() == ("apigateway:a1b2c3d4e5/prod",)
    assert stage("prod", "fff999").traffic_targets() == stage("prod").traffic_targets()
    assert stage("beta").traffic_targets() != stage("prod").traffic_targets()


def test_route53_key_is_zone_name_and_type_normalised() -> None:
    def record(zone: str, name: str, kind: str = "A") -> Route53Router:
        return Route53Router.model_validate(
            {
                "type": "route53",
                "hosted_zone_id": zone,
                "record_name": name,
                "record_type": kind,
                "stable_set_identifier": "edge-v1",
                "canary_set_identifier": "edge-v2",
            }
        )

    key = record("Z0123456789ABCDEFGHIJ", "api.example.com").traffic_targets()
    assert key == ("route53:Z0123456789ABCDEFGHIJ:api.example.com.:A",)
    assert record("/hostedzone/Z0123456789ABCDEFGHIJ", "API.Example.com.").traffic_targets() == key
    assert record("Z0123456789ABCDEFGHIJ", "api.example.com", "AAAA").traffic_targets() != key


@pytest.mark.parametrize("name", sorted(AWS_EXAMPLES))
def test_every_example_has_a_key_naming_its_router_type(name: str) -> None:
    spec = parse_spec(yaml.safe_load(AWS_EXAMPLES[name].read_text()))
    (key,) = spec.traffic_targets()
    assert key.startswith(f"{spec.router.type}:")


def test_a_rollout_has_its_routers_keys_and_a_ring_rollout_every_rings() -> None:
    spec = parse_spec(EXAMPLE)
    assert isinstance(spec, RolloutSpec)
    assert spec.traffic_targets() == spec.router.traffic_targets()
    rings = parse_any_spec(yaml.safe_load((ROOT / "examples" / "rings.yaml").read_text()))
    assert isinstance(rings, RingRolloutSpec)
    keys = rings.traffic_targets()
    assert len(keys) == len(rings.rings)
    assert set(keys) == {k for ring in rings.rings for k in ring.router.traffic_targets()}
    assert list(keys) == sorted(keys)


def test_proxy_routers_and_plugins_have_keys() -> None:
    from sluice.contracts.spec.base import SpecModel
    from sluice.contracts.spec.routers import traffic_targets_of

    nginx = parse_spec(yaml.safe_load((ROOT / "examples" / "nginx.yaml").read_text())).router
    assert traffic_targets_of(nginx) == (f"nginx:{nginx.upstream_file}",)  # type: ignore[union-attr]

    class Plugin(SpecModel):
        type: str = "mine"
        target: str = "x"

    assert traffic_targets_of(Plugin()) == ('mine:{"type":"mine","target":"x"}',)
