"""Each AWS router against a real moto_server over HTTP: set and read back, preflight, what it keeps."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber
from temporalio.exceptions import ApplicationError

from sluice.activities.aws import client
from sluice.activities.routers import router_for
from sluice.contracts import errors
from sluice.contracts.spec import ALBRouter, ApiGatewayRouter, LambdaAliasRouter, Route53Router
from tests.aws.resources import aws, make_alb, make_lambda, make_route53
from tests.support.moto import REGION, MotoServer

pytestmark = pytest.mark.integration

STEPS = (10, 50, 100, 0)


async def test_alb_weights_keep_stickiness_and_a_third_group(aws_env: MotoServer) -> None:
    alb = make_alb(third_group=True)
    router = router_for(ALBRouter(**alb.router()))
    before = alb.default_action()
    for weight in STEPS:
        state = await router.set_weights(weight)
        assert (state.stable_weight, state.canary_weight) == (100 - weight, weight)
        assert alb.weights() == {"stable": 100 - weight, "canary": weight, "other": 20}
        stickiness = alb.default_action()["ForwardConfig"]["TargetGroupStickinessConfig"]
        assert stickiness == before["ForwardConfig"]["TargetGroupStickinessConfig"]
        assert stickiness == {"Enabled": True, "DurationSeconds": 300}
    assert "other=20" in state.detail


async def test_alb_rule_is_weighted_and_the_default_action_untouched(aws_env: MotoServer) -> None:
    alb = make_alb()
    router = router_for(ALBRouter(**alb.router(rule_arn=alb.rule_arn)))
    state = await router.set_weights(30)
    assert state.canary_weight == 30
    assert alb.weights(alb.rule_action()) == {"stable": 70, "canary": 30}
    assert alb.weights() == {"stable": 100, "canary": 0}
    assert alb.rule_action()["ForwardConfig"]["TargetGroupStickinessConfig"]["Enabled"] is True


async def test_alb_preflight_reads_health_and_changes_nothing(aws_env: MotoServer) -> None:
    alb = make_alb()
    state = await router_for(ALBRouter(**alb.router())).preflight()
    assert (state.stable_weight, state.canary_weight) == (100, 0)
    # moto reports a registered, running target as healthy (it runs no health checks) and a
    # stopped EC2 instance as `unused`: that is the unhealthy canary moto can show.
    elb, ec2 = aws("elbv2"), aws("ec2")
    elb.deregister_targets(TargetGroupArn=alb.canary_tg, Targets=[{"Id": "10.0.1.11", "Port": 80}])
    elb.register_targets(TargetGroupArn=alb.canary_tg, Targets=[{"Id": alb.instance_id, "Port": 80}])
    ec2.stop_instances(InstanceIds=[alb.instance_id])
    before = alb.default_action()
    with pytest.raises(ApplicationError) as err:
        await router_for(ALBRouter(**alb.router())).preflight()
    assert err.value.type == errors.ROUTER_CONFIG and err.value.non_retryable
    assert "canary target group canary has no healthy target" in err.value.message
    assert "unused" in err.value.message
    assert alb.default_action() == before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda a: a.router(canary_target_group_arn=a.other_tg), "not in the forward action"),
        (
            lambda a: a.router(canary_target_group_arn=a.other_tg.replace("/other/", "/gone/")),
            "does not exist",
        ),
        (lambda a: a.router(listener_arn=a.listener_arn[:-4] + "beef"), "ListenerNotFound"),
    ],
)
async def test_alb_preflight_failures_change_nothing(aws_env: MotoServer, change: Any, expected: str) -> None:
    alb = make_alb()
    before = alb.default_action()
    with pytest.raises(ApplicationError) as err:
        await router_for(ALBRouter(**change(alb))).preflight()
    assert expected in err.value.message and err.value.non_retryable
    assert alb.default_action() == before


async def test_alb_canary_without_targets_fails_preflight(aws_env: MotoServer) -> None:
    alb = make_alb(canary_targets=False)
    with pytest.raises(ApplicationError, match="no targets registered"):
        await router_for(ALBRouter(**alb.router())).preflight()
    assert alb.weights() == {"stable": 100, "canary": 0}


async def test_lambda_alias_weights_promotion_and_rollback(aws_env: MotoServer) -> None:
    fn = make_lambda()
    router = router_for(LambdaAliasRouter(**fn.router()))
    assert (await router.preflight()).canary_weight == 0
    for weight, expected in [
        (10, ("1", {"2": 0.1})),
        (50, ("1", {"2": 0.5})),
        (100, ("2", {})),
        (0, ("1", {})),
    ]:
        state = await router.set_weights(weight)
        assert state.canary_weight == weight
        assert fn.state() == expected


async def test_lambda_alias_preflight_failures_change_nothing(aws_env: MotoServer) -> None:
    fn = make_lambda()
    with pytest.raises(ApplicationError, match="canary version 9 of checkout-api does not exist") as err:
        await router_for(LambdaAliasRouter(**fn.router(canary_function_version="9"))).preflight()
    assert err.value.non_retryable
    with pytest.raises(ApplicationError, match="ResourceNotFound"):
        await router_for(LambdaAliasRouter(**fn.router(alias="missing"))).preflight()
    aws("lambda").update_alias(FunctionName=fn.function, Name=fn.alias, FunctionVersion="2")
    aws("lambda").update_alias(
        FunctionName=fn.function, Name=fn.alias, RoutingConfig={"AdditionalVersionWeights": {"1": 0.3}}
    )
    with pytest.raises(ApplicationError, match="state Sluice did not set"):
        await router_for(LambdaAliasRouter(**fn.router())).preflight()
    assert fn.state() == ("2", {"1": 0.3})


async def test_route53_weights_keep_ttl_and_values(aws_env: MotoServer) -> None:
    zone = make_route53()
    router = router_for(Route53Router(**zone.router(wait_after_change="100ms")))
    assert (await router.preflight()).canary_weight == 0
    for weight in STEPS:
        state = await router.set_weights(weight)
        assert state.canary_weight == weight
        assert zone.weights() == {"checkout-v1": 100 - weight, "checkout-v2": weight}
    records = zone.records()
    assert records["checkout-v1"]["TTL"] == 60
    assert records["checkout-v2"]["ResourceRecords"] == [{"Value": "10.0.1.11"}]


async def test_route53_preflight_failure_changes_nothing(aws_env: MotoServer) -> None:
    zone = make_route53(canary_record=False)
    with pytest.raises(ApplicationError, match="no weighted record with SetIdentifier 'checkout-v2'") as err:
        await router_for(Route53Router(**zone.router())).set_weights(10)
    assert err.value.non_retryable
    assert zone.weights() == {"checkout-v1": 255}


def _apigw(**over: Any) -> ApiGatewayRouter:
    data = {
        "type": "apigateway",
        "rest_api_id": "a1b2c3d4e5",
        "stage": "prod",
        "stable_deployment_id": "dep1",
        "canary_deployment_id": "dep2",
        "region": REGION,
    } | over
    return ApiGatewayRouter.model_validate(data)


async def test_apigateway_promotion_and_preflight_on_moto(aws_env: MotoServer) -> None:
    api = aws("apigateway")
    rest = api.create_rest_api(name="checkout")["id"]
    root = api.get_resources(restApiId=rest)["items"][0]["id"]
    api.put_method(restApiId=rest, resourceId=root, httpMethod="GET", authorizationType="NONE")
    api.put_integration(restApiId=rest, resourceId=root, httpMethod="GET", type="MOCK")
    dep1 = api.create_deployment(restApiId=rest, stageName="prod")["id"]
    dep2 = api.create_deployment(restApiId=rest, description="v2")["id"]
    router = router_for(_apigw(rest_api_id=rest, stable_deployment_id=dep1, canary_deployment_id=dep2))
    assert (await router.preflight()).canary_weight == 0
    assert (await router.set_weights(100)).canary_weight == 100
    assert api.get_stage(restApiId=rest, stageName="prod")["deploymentId"] == dep2
    assert (await router.set_weights(0)).canary_weight == 0
    assert api.get_stage(restApiId=rest, stageName="prod")["deploymentId"] == dep1
    # (moto answers GetDeployment for an unknown id with HTTP 500, so a missing stage stands in.)
    missing = router_for(
        _apigw(rest_api_id=rest, stage="staging", stable_deployment_id=dep1, canary_deployment_id=dep2)
    )
    with pytest.raises(ApplicationError, match="NotFound") as err:
        await missing.preflight()
    assert err.value.non_retryable
    assert api.get_stage(restApiId=rest, stageName="prod")["deploymentId"] == dep1


async def test_apigateway_canary_settings_with_a_stubbed_client(aws_env: MotoServer) -> None:
    """moto keeps no stage canary settings, so these calls are checked against botocore's Stubber."""
    api = client("apigateway", REGION)
    where = {"restApiId": "a1b2c3d4e5", "stageName": "prod"}
    with Stubber(api) as stub:
        stub.add_response("get_stage", {"deploymentId": "dep1"}, where)
        ops = [
            {"op": "replace", "path": "/deploymentId", "value": "dep1"},
            {"op": "replace", "path": "/canarySettings/deploymentId", "value": "dep2"},
            {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "10"},
        ]
        stub.add_response("update_stage", {}, {**where, "patchOperations": ops})
        canary = {"deploymentId": "dep1", "canarySettings": {"deploymentId": "dep2", "percentTraffic": 10.0}}
        stub.add_response("get_stage", canary, where)
        stub.add_response("get_stage", canary, where)
        ops = [
            {"op": "replace", "path": "/deploymentId", "value": "dep1"},
            {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "0"},
            {"op": "remove", "path": "/canarySettings"},
        ]
        stub.add_response("update_stage", {}, {**where, "patchOperations": ops})
        stub.add_response("get_stage", {"deploymentId": "dep1"}, where)
        stub.add_response("get_stage", canary, where)
        ops = [
            {"op": "replace", "path": "/deploymentId", "value": "dep2"},
            {"op": "remove", "path": "/canarySettings"},
        ]
        stub.add_response("update_stage", {}, {**where, "patchOperations": ops})
        stub.add_response("get_stage", {"deploymentId": "dep2"}, where)
        stub.add_client_error("get_stage", "AccessDeniedException", "not allowed", 403)
        stub.add_client_error("get_stage", "TooManyRequestsException", "slow down", 429)

        router = router_for(_apigw())
        assert (await router.set_weights(10)).canary_weight == 10
        assert (await router.set_weights(0)).canary_weight == 0
        assert (await router.set_weights(100)).canary_weight == 100
        with pytest.raises(ApplicationError) as denied:
            await router.read_weights()
        assert denied.value.type == errors.ROUTER_REJECTED and denied.value.non_retryable
        assert "apigateway:GET" in denied.value.message
        with pytest.raises(ApplicationError) as throttled:
            await router.read_weights()
        assert throttled.value.type == errors.ROUTER_UNREACHABLE and not throttled.value.non_retryable
        stub.assert_no_pending_responses()


async def test_access_denied_names_the_permission(aws_env: MotoServer) -> None:
    fn = make_lambda()
    api = client("lambda", None)
    with Stubber(api) as stub:
        stub.add_client_error("update_alias", "AccessDeniedException", "User is not authorized", 403)
        with pytest.raises(ApplicationError) as err:
            await router_for(LambdaAliasRouter(**fn.router())).set_weights(10)
    assert err.value.non_retryable and err.value.type == errors.ROUTER_REJECTED
    assert "lambda:UpdateAlias" in err.value.message
    assert fn.state() == ("1", {})
