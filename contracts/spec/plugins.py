"""Router types from installed packages: the `sluice.routers` entry-point group.

A package adds a router by naming its spec model under the group, keyed by the spec's
`type`, e.g. in its pyproject.toml:

    [project.entry-points."sluice.routers"]
    envoy = "sluice_envoy.spec:EnvoyRouter"

The spec model is a `SpecModel` subclass (from `sluice.contracts.spec.base`, as the spec
package is still being built when plugins are found) with `type: Literal["envoy"]`, a
`describe()`, and `router: ClassVar[str]`, the `module:Class` of its `TrafficRouter`
(preflight, set_weights, read_weights; errors as `ApplicationError` with a type from
`sluice.contracts.errors`), which the worker imports. The model joins the spec's router
union, so a plugin's fields are validated, reported with their paths (`router.listener`) and
digested exactly like a built-in router's.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal, get_args, get_origin

from sluice.contracts.spec.base import SpecModel

GROUP = "sluice.routers"
_ROUTER_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class RouterPlugin:
    """One router type an installed package provides."""

    router_type: str
    spec_model: type[SpecModel]
    router: str
    """`module:Class` of the `TrafficRouter`, called with a validated `spec_model`."""
    source: str
    """`<distribution> <version> (<module>:<attr>)`, for messages."""


def discover(builtin_types: Iterable[str], found: Iterable[EntryPoint] | None = None) -> list[RouterPlugin]:
    """The plugins in `found` (default: the installed `sluice.routers` entry points), in name order.

    One that cannot be used (fails to import, shadows a built-in type, has no proper spec
    model) is left out with a warning naming the package and the reason, so a broken
    plugin never stops Sluice or the other routers.
    """
    builtin = set(builtin_types)
    points = sorted(entry_points(group=GROUP) if found is None else found, key=lambda p: p.name)
    plugins: dict[str, RouterPlugin] = {}
    for point in points:
        dist = getattr(point, "dist", None)
        source = f"{dist.name} {dist.version} ({point.value})" if dist else point.value
        try:
            plugin = _load(point, source, builtin)
        except Exception as err:  # a third-party package: any failure leaves it out
            warnings.warn(f"router plugin {point.name!r} from {source} is not used: {err}", stacklevel=2)
            continue
        if plugin.router_type in plugins:
            warnings.warn(
                f"router plugin {point.name!r} from {source} is not used: "
                f"{plugins[plugin.router_type].source} already provides that type",
                stacklevel=2,
            )
            continue
        plugins[plugin.router_type] = plugin
    return list(plugins.values())


def _load(point: EntryPoint, source: str, builtin: set[str]) -> RouterPlugin:
    if point.name in builtin:
        raise ValueError(f"{point.name!r} is a built-in router type")
    model = point.load()
    if not (isinstance(model, type) and issubclass(model, SpecModel)):
        raise TypeError(f"{point.value} must be a subclass of sluice.contracts.spec.base.SpecModel")
    tag = model.model_fields.get("type")
    annotation = None if tag is None else tag.annotation
    if not _is_literal_of(annotation, point.name):
        raise TypeError(
            f"{model.__name__}.type must be Literal[{point.name!r}], the entry point's name, got {annotation}"
        )
    if not callable(getattr(model, "describe", None)):
        raise TypeError(f"{model.__name__} has no describe() (one line for plans and the UI)")
    router = getattr(model, "router", None)
    if not (isinstance(router, str) and _ROUTER_PATH.fullmatch(router)):
        raise TypeError(
            f"{model.__name__}.router must name its TrafficRouter as 'module:Class', got {router!r}"
        )
    return RouterPlugin(router_type=point.name, spec_model=model, router=router, source=source)


def _is_literal_of(annotation: Any, name: str) -> bool:
    """Whether `annotation` is `Literal[name]` and nothing else (the discriminated union's tag)."""
    return get_origin(annotation) is Literal and get_args(annotation) == (name,)
