"""Traffic routers. `router_for(spec)` returns the implementation for a spec's `router.type`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sluice.activities.routers.alb import ALBTrafficRouter
from sluice.activities.routers.apigateway import ApiGatewayTrafficRouter
from sluice.activities.routers.base import TrafficRouter
from sluice.activities.routers.caddy import CaddyTrafficRouter
from sluice.activities.routers.haproxy import HAProxyTrafficRouter
from sluice.activities.routers.lambda_alias import LambdaAliasTrafficRouter
from sluice.activities.routers.nginx import NginxTrafficRouter
from sluice.activities.routers.route53 import Route53TrafficRouter
from sluice.activities.routers.traefik import TraefikTrafficRouter
from sluice.contracts.spec import (
    ALBRouter,
    ApiGatewayRouter,
    CaddyRouter,
    HAProxyRouter,
    LambdaAliasRouter,
    NginxRouter,
    Route53Router,
    RouterSpec,
    TraefikRouter,
)

ROUTERS: Mapping[type[Any], Callable[[Any], TrafficRouter]] = {
    HAProxyRouter: HAProxyTrafficRouter,
    ALBRouter: ALBTrafficRouter,
    LambdaAliasRouter: LambdaAliasTrafficRouter,
    ApiGatewayRouter: ApiGatewayTrafficRouter,
    Route53Router: Route53TrafficRouter,
    NginxRouter: NginxTrafficRouter,
    TraefikRouter: TraefikTrafficRouter,
    CaddyRouter: CaddyTrafficRouter,
}
"""Each router spec model and the class that drives it; a new router type adds a module and a line."""


def router_for(spec: RouterSpec) -> TrafficRouter:
    """The router for `spec` (the spec is validated, so every type has one)."""
    return ROUTERS[type(spec)](spec)


__all__ = ["ROUTERS", "TrafficRouter", "router_for"]
