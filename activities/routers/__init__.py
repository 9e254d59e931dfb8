"""Traffic routers. `router_for(spec)` returns the implementation for a spec's `router.type`."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

from temporalio.exceptions import ApplicationError

from sluice.activities.routers.alb import ALBTrafficRouter
from sluice.activities.routers.apigateway import ApiGatewayTrafficRouter
from sluice.activities.routers.base import TrafficRouter
from sluice.activities.routers.caddy import CaddyTrafficRouter
from sluice.activities.routers.haproxy import HAProxyTrafficRouter
from sluice.activities.routers.lambda_alias import LambdaAliasTrafficRouter
from sluice.activities.routers.nginx import NginxTrafficRouter
from sluice.activities.routers.route53 import Route53TrafficRouter
from sluice.activities.routers.traefik import TraefikTrafficRouter
from sluice.contracts import errors
from sluice.contracts.spec import (
    ROUTER_PLUGINS,
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
from sluice.contracts.text import cap

ROUTERS: dict[type[Any], Callable[[Any], TrafficRouter]] = {
    HAProxyRouter: HAProxyTrafficRouter,
    ALBRouter: ALBTrafficRouter,
    LambdaAliasRouter: LambdaAliasTrafficRouter,
    ApiGatewayRouter: ApiGatewayTrafficRouter,
    Route53Router: Route53TrafficRouter,
    NginxRouter: NginxTrafficRouter,
    TraefikRouter: TraefikTrafficRouter,
    CaddyRouter: CaddyTrafficRouter,
}
"""Each router spec model and the class that drives it; a new router type adds a module and a line
(or comes from an installed package: see `sluice.contracts.spec.plugins`)."""

PLUGIN_PROBLEMS: dict[str, str] = {}
"""Why a plugin's router class could not be used on this worker, by router type."""


def _load_plugins() -> None:
    for plugin in ROUTER_PLUGINS:
        module, _, name = plugin.router.partition(":")
        try:
            router = getattr(importlib.import_module(module), name)
            interface = ("preflight", "set_weights", "read_weights")
            missing = [m for m in interface if not callable(getattr(router, m, None))]
            if missing:
                raise TypeError(f"{plugin.router} lacks {', '.join(missing)} of the TrafficRouter interface")
        except Exception as err:  # a third-party package: leave it out, say why when it is used
            PLUGIN_PROBLEMS[plugin.router_type] = f"{plugin.source}: {err}"
            warnings.warn(f"router plugin {plugin.router_type!r} is not used: {err}", stacklevel=2)
            continue
        ROUTERS[plugin.spec_model] = router


_load_plugins()


def router_for(spec: RouterSpec) -> TrafficRouter:
    """The router for `spec`; ROUTER_CONFIG (not retryable) if its plugin could not be loaded here."""
    factory = ROUTERS.get(type(spec))
    if factory is None:
        problem = PLUGIN_PROBLEMS.get(spec.type, "no router class is registered for it")
        raise ApplicationError(
            cap(f"router type {spec.type!r} cannot run on this worker: {problem}"),
            type=errors.ROUTER_CONFIG,
            non_retryable=True,
        )
    return factory(spec)


__all__ = ["PLUGIN_PROBLEMS", "ROUTERS", "TrafficRouter", "router_for"]
