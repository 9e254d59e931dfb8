"""AWS resources for the tests, created in moto_server through boto3 exactly as a user would in AWS."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

import boto3

from tests.support.moto import REGION


def aws(service: str) -> Any:
    """A boto3 client for the moto_server in AWS_ENDPOINT_URL (set by the fixtures)."""
    return boto3.client(service, region_name=REGION)


@dataclass
class Alb:
    listener_arn: str
    stable_tg: str
    canary_tg: str
    other_tg: str
    rule_arn: str
    instance_id: str

    def router(self, **over: Any) -> dict[str, Any]:
        return {
            "type": "alb",
            "listener_arn": self.listener_arn,
            "stable_target_group_arn": self.stable_tg,
            "canary_target_group_arn": self.canary_tg,
            **over,
        }

    def default_action(self) -> dict[str, Any]:
        actions = aws("elbv2").describe_listeners(ListenerArns=[self.listener_arn])["Listeners"][0][
            "DefaultActions"
        ]
        return dict(actions[0])

    def rule_action(self) -> dict[str, Any]:
        return dict(aws("elbv2").describe_rules(RuleArns=[self.rule_arn])["Rules"][0]["Actions"][0])

    def weights(self, action: dict[str, Any] | None = None) -> dict[str, int]:
        """Target group name -> weight in the default action (or `action`)."""
        action = action or self.default_action()
        return {
            g["TargetGroupArn"].split(":targetgroup/")[1].split("/")[0]: g["Weight"]
            for g in action["ForwardConfig"]["TargetGroups"]
        }


def make_alb(third_group: bool = False, canary_targets: bool = True) -> Alb:
    """VPC, two subnets, an ALB, target groups `stable`, `canary` (and `other`) with registered
    IP targets, a listener forwarding stable 100 / canary 0 with stickiness, and one rule."""
    ec2, elb = aws("ec2"), aws("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in ((1, "a"), (2, "b"))
    ]
    lb = elb.create_load_balancer(Name="web", Subnets=subnets, Type="application")["LoadBalancers"][0]
    groups = {}
    for name in ("stable", "canary", "other"):
        groups[name] = elb.create_target_group(
            Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=groups["stable"], Targets=[{"Id": "10.0.1.10", "Port": 80}])
    elb.register_targets(TargetGroupArn=groups["other"], Targets=[{"Id": "10.0.1.12", "Port": 80}])
    if canary_targets:
        elb.register_targets(TargetGroupArn=groups["canary"], Targets=[{"Id": "10.0.1.11", "Port": 80}])
    weighted = [
        {"TargetGroupArn": groups["stable"], "Weight": 100},
        {"TargetGroupArn": groups["canary"], "Weight": 0},
    ]
    if third_group:
        weighted.append({"TargetGroupArn": groups["other"], "Weight": 20})
    forward = {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": weighted,
            "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 300},
        },
    }
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=[forward]
    )["Listeners"][0]["ListenerArn"]
    rule = elb.create_rule(
        ListenerArn=listener,
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
        Actions=[forward],
    )["Rules"][0]["RuleArn"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnets[0])["Instances"][0]
    return Alb(listener, groups["stable"], groups["canary"], groups["other"], rule, instance["InstanceId"])


@dataclass
class LambdaAlias:
    function: str
    alias: str
    stable: str
    canary: str

    def router(self, **over: Any) -> dict[str, Any]:
        return {
            "type": "lambda_alias",
            "function_name": self.function,
            "alias": self.alias,
            "stable_function_version": self.stable,
            "canary_function_version": self.canary,
            **over,
        }

    def state(self) -> tuple[str, dict[str, float]]:
        alias = aws("lambda").get_alias(FunctionName=self.function, Name=self.alias)
        return alias["FunctionVersion"], dict(
            (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        )


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    return 'ok'\n")
    return buf.getvalue()


def make_lambda() -> LambdaAlias:
    """A function with published versions 1 (stable) and 2 (canary) and alias `live` -> 1."""
    iam, lam = aws("iam"), aws("lambda")
    role = iam.create_role(
        RoleName="checkout-lambda",
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}',
    )["Role"]["Arn"]
    lam.create_function(
        FunctionName="checkout-api",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": _zip()},
    )
    v1 = lam.publish_version(FunctionName="checkout-api")["Version"]
    lam.update_function_code(FunctionName="checkout-api", ZipFile=_zip() + b"")
    v2 = lam.publish_version(FunctionName="checkout-api", Description="v2")["Version"]
    lam.create_alias(FunctionName="checkout-api", Name="live", FunctionVersion=v1)
    return LambdaAlias("checkout-api", "live", v1, v2)


@dataclass
class Route53Records:
    zone: str
    name: str

    def router(self, **over: Any) -> dict[str, Any]:
        return {
            "type": "route53",
            "hosted_zone_id": self.zone,
            "record_name": self.name,
            "record_type": "A",
            "stable_set_identifier": "checkout-v1",
            "canary_set_identifier": "checkout-v2",
            **over,
        }

    def records(self) -> dict[str, dict[str, Any]]:
        found = aws("route53").list_resource_record_sets(HostedZoneId=self.zone)["ResourceRecordSets"]
        return {r["SetIdentifier"]: r for r in found if r.get("SetIdentifier")}

    def weights(self) -> dict[str, int]:
        return {ident: int(r["Weight"]) for ident, r in self.records().items()}


def make_route53(canary_record: bool = True) -> Route53Records:
    """Zone example.com with weighted A records checkout-v1 (255) and checkout-v2 (0), TTL 60."""
    r53 = aws("route53")
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="sluice-test")["HostedZone"]["Id"]
    zone = zone.removeprefix("/hostedzone/")
    records = [("checkout-v1", 255, "10.0.1.10")] + (
        [("checkout-v2", 0, "10.0.1.11")] if canary_record else []
    )
    r53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": "api.example.com",
                        "Type": "A",
                        "SetIdentifier": ident,
                        "Weight": weight,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": ip}],
                    },
                }
                for ident, weight, ip in records
            ]
        },
    )
    return Route53Records(zone, "api.example.com")
