"""The NGINX router against a real NGINX 1.22 (Debian's) in front of two demo services."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from sluice.activities.routers import router_for
from sluice.activities.routers.nginx import HEADER, NginxTrafficRouter
from sluice.contracts import errors
from sluice.contracts.spec import NginxRouter
from tests.integration.conftest import CANARY_VERSION, STABLE_VERSION, DemoPair, _require
from tests.support.load import send_requests
from tests.support.nginx import NGINX_BIN, NginxInstance, start_nginx, write_servers
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

# One worker's smooth weighted round robin is exact over each cycle of 100 requests, but a
# reload starts a new cycle mid-way: allow the same one-request slack as HAProxy's test, twice.
TOLERANCE = 2


@pytest.fixture
def nginx(tmp_path_factory: pytest.TempPathFactory, demo: DemoPair) -> Iterator[NginxInstance]:
    """A fresh NGINX per test: stable at weight 100, canary `down`."""
    _require(NGINX_BIN)
    instance = start_nginx(
        tmp_path_factory.mktemp("nginx"),
        frontend_port=free_port(),
        stable_addr=demo.stable.addr,
        canary_addr=demo.canary.addr,
    )
    yield instance
    instance.stop()


def spec_for(instance: NginxInstance, **overrides: object) -> NginxRouter:
    fields: dict[str, object] = {**instance.router(), "timeout": "5s"}
    fields.update(overrides)
    return NginxRouter.model_validate(fields)


async def count_versions(instance: NginxInstance, n: int) -> dict[str, int]:
    counts = await asyncio.to_thread(send_requests, instance.url + "/", n)
    assert counts.failures == 0
    return dict(counts.by_version)


def served_lines(instance: NginxInstance) -> list[str]:
    return [line for line in instance.upstream_file.read_text().splitlines() if line.startswith("server")]


async def test_preflight_reports_split_and_changes_nothing(nginx: NginxInstance) -> None:
    before = nginx.upstream_file.read_text()

    state = await router_for(spec_for(nginx)).preflight()

    assert (state.stable_weight, state.canary_weight) == (100, 0)
    assert str(nginx.upstream_file) in state.detail
    assert nginx.upstream_file.read_text() == before


async def test_set_weights_splits_real_requests(nginx: NginxInstance) -> None:
    router = router_for(spec_for(nginx))
    for canary in (10, 50, 100, 0):
        state = await router.set_weights(canary)

        assert (state.stable_weight, state.canary_weight) == (100 - canary, canary)
        seen = await count_versions(nginx, 200)
        assert abs(seen.get(CANARY_VERSION, 0) - 2 * canary) <= TOLERANCE, (canary, seen)
        assert seen.get(CANARY_VERSION, 0) + seen.get(STABLE_VERSION, 0) == 200
        if canary in (0, 100):  # at the ends, not a single stray request
            assert seen.get(CANARY_VERSION, 0) == 2 * canary
        read = await router.read_weights()
        assert (read.stable_weight, read.canary_weight) == (100 - canary, canary)


async def test_zero_percent_is_a_down_server_and_the_file_keeps_both(nginx: NginxInstance) -> None:
    router = router_for(spec_for(nginx))
    await router.set_weights(100)
    assert served_lines(nginx) == [
        f"server {nginx.stable_addr} down;",
        f"server {nginx.canary_addr} weight=100;",
    ]
    await router.set_weights(0)
    assert served_lines(nginx) == [
        f"server {nginx.stable_addr} weight=100;",
        f"server {nginx.canary_addr} down;",
    ]
    assert nginx.upstream_file.read_text().startswith(HEADER)


async def test_other_server_parameters_are_kept(nginx: NginxInstance) -> None:
    nginx.upstream_file.write_text(
        f"server {nginx.stable_addr} max_fails=3 fail_timeout=5s weight=100;\n"
        f"server {nginx.canary_addr} down max_fails=3;  # the new version\n"
    )
    await router_for(spec_for(nginx)).set_weights(25)
    assert served_lines(nginx) == [
        f"server {nginx.stable_addr} max_fails=3 fail_timeout=5s weight=75;",
        f"server {nginx.canary_addr} max_fails=3 weight=25;",
    ]


async def test_a_change_nginx_refuses_restores_the_file_and_changes_nothing(nginx: NginxInstance) -> None:
    router = router_for(spec_for(nginx))
    await router.set_weights(10)
    # A parameter NGINX rejects, written by hand: `nginx -t` fails once the weights are rewritten.
    nginx.upstream_file.write_text(
        f"server {nginx.stable_addr} weight=90 max_fails=x;\nserver {nginx.canary_addr} weight=10;\n"
    )
    before = nginx.upstream_file.read_text()

    with pytest.raises(ApplicationError) as caught:
        await router.set_weights(50)

    assert caught.value.type == errors.ROUTER_REJECTED
    assert caught.value.non_retryable
    assert "max_fails" in caught.value.message and "previous file is back" in caught.value.message
    assert nginx.upstream_file.read_text() == before
    seen = await count_versions(nginx, 100)
    assert abs(seen.get(CANARY_VERSION, 0) - 10) <= TOLERANCE  # still the split before


async def test_a_stopped_nginx_is_unreachable_and_retryable(nginx: NginxInstance) -> None:
    nginx.stop()

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(nginx)).set_weights(10)

    assert caught.value.type == errors.ROUTER_UNREACHABLE
    assert not caught.value.non_retryable
    assert "NGINX is not running" in caught.value.message


async def test_a_hand_edit_without_reload_is_noticed(nginx: NginxInstance) -> None:
    router = router_for(spec_for(nginx))
    await router.set_weights(10)
    await asyncio.sleep(0.1)  # the edit comes clearly after the reload's workers started
    write_servers(nginx.upstream_file, nginx.stable_addr, nginx.canary_addr, 50, 50)

    with pytest.raises(ApplicationError) as caught:
        await router.read_weights()
    assert caught.value.type == errors.TRAFFIC_NOT_APPLIED
    assert "changed after NGINX last loaded" in caught.value.message

    state = await router.set_weights(10)  # a retry puts the declared split back and reloads
    assert (state.stable_weight, state.canary_weight) == (90, 10)
    assert (await router.read_weights()).canary_weight == 10


@pytest.mark.parametrize(
    ("stable", "canary", "fix"),
    [
        (0, 100, "swap stable_server and canary_server"),
        (90, 10, "weight=100;"),
    ],
    ids=["promoted-sides-kept", "half-way"],
)
async def test_preflight_refuses_a_split_a_rollout_cannot_start_from(
    nginx: NginxInstance, stable: int, canary: int, fix: str
) -> None:
    router = router_for(spec_for(nginx))
    await router.set_weights(canary)
    before = nginx.upstream_file.read_text()

    with pytest.raises(ApplicationError) as caught:
        await router.preflight()

    assert caught.value.type == errors.UNEXPECTED_SPLIT
    assert caught.value.non_retryable
    assert fix in caught.value.message
    assert len(caught.value.message) <= 300
    assert nginx.upstream_file.read_text() == before


@pytest.mark.parametrize(
    ("break_it", "hint"),
    [
        (lambda n: n.upstream_file.unlink(), "does not exist; create it"),
        (lambda n: n.upstream_file.write_text("server 127.0.0.1:1 weight=5;\n"), "must hold exactly"),
        (lambda n: n.config_path.unlink(), "does not exist"),
        (
            lambda n: n.config_path.write_text(
                n.config_path.read_text().replace(f"include {n.upstream_file};", "server 127.0.0.1:1;")
            ),
            "does not include the file",
        ),
    ],
    ids=["no-include-file", "third-server", "no-config", "not-included"],
)
async def test_preflight_config_errors_are_not_retryable(
    nginx: NginxInstance, break_it: object, hint: str
) -> None:
    break_it(nginx)  # type: ignore[operator]

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(nginx)).preflight()

    assert caught.value.type == errors.ROUTER_CONFIG
    assert caught.value.non_retryable
    assert hint in caught.value.message


async def test_missing_binary_is_a_config_error(nginx: NginxInstance) -> None:
    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(nginx, binary="/nonexistent/nginx")).preflight()
    assert caught.value.type == errors.ROUTER_CONFIG
    assert "runs next to NGINX" in caught.value.message


async def test_stopped_nginx_fails_preflight_as_unreachable(nginx: NginxInstance) -> None:
    nginx.stop()
    with pytest.raises(ApplicationError) as caught:
        await router_for(spec_for(nginx)).preflight()
    assert caught.value.type == errors.ROUTER_UNREACHABLE
    assert "not running" in caught.value.message


def test_server_addresses_that_could_inject_directives_are_refused() -> None:
    base = {
        "type": "nginx",
        "config": "/etc/nginx/nginx.conf",
        "upstream_file": "/etc/nginx/sluice/checkout.conf",
        "stable_server": "127.0.0.1:8081",
        "canary_server": "127.0.0.1:8082",
    }
    for field, value in [
        ("canary_server", "127.0.0.1:8082; server 10.0.0.1:80"),
        ("canary_server", "127.0.0.1:8082 weight=100"),
        ("canary_server", "unix:/run/a.sock;"),
        ("upstream_file", "/etc/nginx/x.conf\n"),
        ("upstream_file", "relative.conf"),
        ("canary_server", "127.0.0.1:70000"),
    ]:
        with pytest.raises(ValidationError):
            NginxRouter.model_validate({**base, field: value})


async def test_without_a_pid_directive_the_compiled_in_pid_file_is_used(nginx: NginxInstance) -> None:
    """Debian's nginx.conf sets `pid /run/nginx.pid;`; a config without one falls back to `nginx -V`."""
    router = NginxTrafficRouter(spec_for(nginx))
    deadline = time.monotonic() + 5
    assert await router._pid_path("events {}\n", deadline) == "/run/nginx.pid"  # Debian's --pid-path
    assert await router._pid_path("pid nginx.pid;\n", deadline) == str(nginx.prefix / "nginx.pid")
