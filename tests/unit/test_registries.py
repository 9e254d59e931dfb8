"""Every router and metric type the spec accepts has an implementation, and only those."""

from __future__ import annotations

from typing import Any, get_args

from sluice.activities.providers import PROVIDERS
from sluice.activities.routers import ROUTERS
from sluice.contracts.spec import MetricSpec, RouterSpec


def models(annotated: Any) -> set[type[Any]]:
    """The models of a discriminated union `Annotated[A | B | ..., Field(...)]`."""
    union = get_args(annotated)[0]
    return set(get_args(union))


def test_every_router_type_has_a_router() -> None:
    assert set(ROUTERS) == models(RouterSpec)


def test_every_metric_type_has_a_provider() -> None:
    assert set(PROVIDERS) == models(MetricSpec)
