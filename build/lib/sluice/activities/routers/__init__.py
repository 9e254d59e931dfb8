"""Traffic routers. `router_for(spec)` returns the implementation for a spec's `router.type`."""

from __future__ import annotations

from sluice.activities.routers.alb import ALBTrafficRouter
from sluice.activities.routers.apigateway import ApiGatewayTrafficRouter
from sluice.activities.routers.base import TrafficRouter
from sluice.activities.routers.haproxy import HAProxyTrafficRouter
from sluice.activities.routers.lambda_alias import LambdaAliasTrafficRouter
from sluice.activities.routers.route53 import Route53TrafficRouter
from sluice.contracts.spec import (
    ALBRouter,
    ApiGatewayRouter,
    HAProxyRouter,
    LambdaAliasRouter,
    Route53Router,
    RouterSpec,
)


def router_for(spec: RouterSpec) -> TrafficRouter:
    """The router for `spec`; adding a router type adds a branch here and a module, nothing else."""
    if isinstance(spec, HAProxyRouter):
        return HAProxyTrafficRouter(spec)
    if isinstance(spec, ALBRouter):
        return ALBTrafficRouter(spec)
    if isinstance(spec, LambdaAliasRouter):
        return LambdaAliasTrafficRouter(spec)
    if isinstance(spec, ApiGatewayRouter):
        return ApiGatewayTrafficRouter(spec)
    if isinstance(spec, Route53Router):
        return Route53TrafficRouter(spec)
    raise TypeError(f"no router for {type(spec).__name__}")  # unreachable: the spec is validated


__all__ = ["TrafficRouter", "router_for"]
