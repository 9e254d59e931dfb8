"""Traffic routers. `router_for(spec)` returns the implementation for a spec's `router.type`."""

from __future__ import annotations

from activities.routers.base import TrafficRouter
from activities.routers.haproxy import HAProxyTrafficRouter
from contracts.spec import HAProxyRouter, RouterSpec


def router_for(spec: RouterSpec) -> TrafficRouter:
    """The router for `spec`; adding a router type adds a branch here and a module, nothing else."""
    if isinstance(spec, HAProxyRouter):
        return HAProxyTrafficRouter(spec)
    raise TypeError(f"no router for {type(spec).__name__}")  # unreachable: the spec is validated


__all__ = ["TrafficRouter", "router_for"]
