"""The HAProxy router against a real HAProxy 2.6 in front of two demo services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from sluice.activities.haproxy_api import RuntimeAPI
from sluice.activities.routers import router_for
from sluice.activities.routers.haproxy import HAProxyTrafficRouter
from sluice.contracts import errors
from sluice.contracts.spec import HAProxyRouter
from tests.integration.conftest import CANARY_VERSION, STABLE_VERSION, DemoPair, router_spec
from tests.support.haproxy import HAProxyInstance
from tests.support.load import send_requests
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

# HAProxy's weighted roundrobin is exact over each full cycle of 100 requests, but a weight
# change lands in the middle of a cycle: the first 200 requests after a change were seen
# off by one (19 instead of 20 at 10%). Two is the honest tolerance, not statistics.
TOLERANCE = 2


def weights(instance: HAProxyInstance) -> tuple[int, int]:
    """(stable, canary) as HAProxy reports them, read with our own sync helper."""
    stable = instance.command(f"get weight {instance.backend}/stable").split()[0]
    canary = instance.command(f"get weight {instance.backend}/canary").split()[0]
    return int(stable), int(canary)


async def count_versions(instance: HAProxyInstance, n: int) -> dict[str, int]:
    counts = await asyncio.to_thread(send_requests, instance.url + "/", n)
    assert counts.failures == 0
    return dict(counts.by_version)


async def test_preflight_reports_split_and_changes_nothing(
    haproxy: HAProxyInstance, router: HAProxyRouter
) -> None:
    state = await router_for(router).preflight()

    assert (state.stable_weight, state.canary_weight) == (100, 0)
    assert state.canary_counters is not None
    assert state.canary_counters.responses == 0
    assert str(haproxy.admin_socket) in state.detail
    assert weights(haproxy) == (100, 0)


@pytest.mark.parametrize(
    "stable, canary, fix",
    [
        (0, 100, "swap stable_server and canary_server"),  # after a promotion, names kept
        (0, 0, "set weight be_demo/stable 100 first"),
        (90, 10, "set weight be_demo/canary 0 and be_demo/stable 100"),  # a rollout stopped half-way
    ],
    ids=["promoted-sides-kept", "no-traffic", "half-way"],
)
async def test_preflight_refuses_a_split_a_rollout_cannot_start_from(
    haproxy: HAProxyInstance, router: HAProxyRouter, stable: int, canary: int, fix: str
) -> None:
    for server, weight in (("stable", stable), ("canary", canary)):
        assert haproxy.command(f"set weight {haproxy.backend}/{server} {weight}").strip() == ""

    with pytest.raises(ApplicationError) as caught:
        await router_for(router).preflight()

    assert caught.value.type == errors.UNEXPECTED_SPLIT
    assert caught.value.non_retryable
    assert f"stable={stable} canary={canary}" in caught.value.message  # the weights it found
    assert fix in caught.value.message  # how to fix it
    assert len(caught.value.message) <= 300  # the status shows it whole (failure_cause caps there)
    assert weights(haproxy) == (stable, canary)  # nothing touched


@pytest.mark.parametrize("field", ["canary_server", "stable_server"])
async def test_preflight_missing_server_is_a_config_error(haproxy: HAProxyInstance, field: str) -> None:
    spec = router_spec(haproxy, **{field: "nope"})

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec).preflight()

    assert caught.value.type == errors.ROUTER_CONFIG
    assert caught.value.non_retryable
    assert "'nope'" in caught.value.message
    assert haproxy.backend in caught.value.message
    assert "haproxy.cfg" in caught.value.message  # says how to fix it
    assert weights(haproxy) == (100, 0)


async def test_set_weights_on_missing_server_changes_nothing(haproxy: HAProxyInstance) -> None:
    spec = router_spec(haproxy, stable_server="nope")

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec).set_weights(50)

    assert caught.value.type == errors.ROUTER_CONFIG
    assert weights(haproxy) == (100, 0)


async def test_missing_backend_is_a_config_error(haproxy: HAProxyInstance) -> None:
    spec = router_spec(haproxy, backend="be_nope")

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec).preflight()

    assert caught.value.type == errors.ROUTER_CONFIG
    assert caught.value.non_retryable
    assert "be_nope" in caught.value.message


@pytest.mark.parametrize("socket", ["missing-file", "refused-tcp"], ids=["unix-missing", "tcp-refused"])
async def test_unreachable_socket_is_retryable(tmp_path: Path, socket: str) -> None:
    address = str(tmp_path / "absent.sock") if socket == "missing-file" else f"127.0.0.1:{free_port()}"
    spec = HAProxyRouter(
        type="haproxy",
        admin_socket=address,
        backend="be_demo",
        stable_server="stable",
        canary_server="canary",
    )

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec).set_weights(0)

    assert caught.value.type == errors.ROUTER_UNREACHABLE
    assert not caught.value.non_retryable
    assert address in caught.value.message


async def test_silent_socket_times_out_as_unreachable(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("silent") / "s.sock"

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # hold the connection open without replying

    server = await asyncio.start_unix_server(never_answer, path=str(path))
    try:
        spec = HAProxyRouter(
            type="haproxy",
            admin_socket=str(path),
            backend="be_demo",
            stable_server="stable",
            canary_server="canary",
            timeout="200ms",
        )
        with pytest.raises(ApplicationError) as caught:
            await router_for(spec).preflight()
    finally:
        server.close()

    assert caught.value.type == errors.ROUTER_UNREACHABLE
    assert "no answer within 0.2s" in caught.value.message


async def test_set_weights_splits_real_requests(haproxy: HAProxyInstance, router: HAProxyRouter) -> None:
    impl = router_for(router)
    for canary in (10, 50, 100, 0):
        state = await impl.set_weights(canary)

        assert (state.stable_weight, state.canary_weight) == (100 - canary, canary)
        assert weights(haproxy) == (100 - canary, canary)
        seen = await count_versions(haproxy, 200)
        assert abs(seen.get(CANARY_VERSION, 0) - 2 * canary) <= TOLERANCE, (canary, seen)
        assert seen.get(CANARY_VERSION, 0) + seen.get(STABLE_VERSION, 0) == 200
        if canary in (0, 100):  # no tolerance at the ends: not a single stray request
            assert seen.get(CANARY_VERSION, 0) == 2 * canary


async def test_set_weights_is_idempotent(haproxy: HAProxyInstance, router: HAProxyRouter) -> None:
    impl = router_for(router)
    first = await impl.set_weights(25)
    again = await impl.set_weights(25)

    assert (first.stable_weight, first.canary_weight) == (again.stable_weight, again.canary_weight)
    assert weights(haproxy) == (75, 25)


async def test_set_weights_returns_counters_from_before_the_change(
    haproxy: HAProxyInstance, router: HAProxyRouter, demo: DemoPair
) -> None:
    impl = router_for(router)
    await impl.set_weights(50)
    demo.canary.control(error_rate=1.0)
    sent = await asyncio.to_thread(send_requests, haproxy.url + "/", 40)
    canary_answers = sent.by_version[CANARY_VERSION]
    assert canary_answers > 0

    state = await impl.set_weights(0)

    assert state.canary_counters is not None
    assert state.canary_counters.responses == canary_answers
    assert state.canary_counters.errors_5xx == sent.by_version_status[(CANARY_VERSION, 500)]
    assert state.canary_counters.errors_5xx == canary_answers
    now = await RuntimeAPI.all_of(router)[0].counters(router.canary_server)
    assert now[router.canary_server] == state.canary_counters  # no canary traffic since


async def test_refused_command_is_rejected_and_not_retried(
    haproxy_operator: HAProxyInstance,
) -> None:
    spec = router_spec(haproxy_operator)

    with pytest.raises(ApplicationError) as caught:
        await router_for(spec).set_weights(50)

    assert caught.value.type == errors.ROUTER_REJECTED
    assert caught.value.non_retryable
    assert "Permission denied" in caught.value.message
    assert "level admin" in caught.value.message
    assert weights(haproxy_operator) == (100, 0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("backend", "be_demo\nset weight be_demo/canary 100"),
        ("backend", "be_demo; disable server be_demo/stable"),
        ("canary_server", "canary 100"),
        ("stable_server", ""),
    ],
)
def test_names_that_could_inject_commands_are_refused_by_the_spec(field: str, value: str) -> None:
    fields = {
        "type": "haproxy",
        "admin_socket": "/run/haproxy/admin.sock",
        "backend": "be_demo",
        "stable_server": "stable",
        "canary_server": "canary",
        field: value,
    }
    with pytest.raises(ValidationError, match="runtime API"):
        HAProxyRouter.model_validate(fields)


# --- order of the two weight commands ---------------------------------------------------


class RecordingRelay:
    """A unix socket in front of HAProxy's that records commands and can drop one.

    It lets a test see the order of `set weight` commands and make the second one fail
    as if the socket vanished between them, while HAProxy itself stays real.
    """

    def __init__(self, path: Path, upstream: Path) -> None:
        self.path = path
        self.upstream = upstream
        self.commands: list[str] = []
        self.drop: Callable[[str], bool] = lambda command: False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = (await reader.readline()).decode().strip()
        self.commands.append(command)
        if self.drop(command):
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.upstream))
        up_writer.write(command.encode() + b"\n")
        await up_writer.drain()
        writer.write(await up_reader.read())
        up_writer.close()
        await writer.drain()
        writer.close()

    def set_weights(self) -> list[str]:
        return [c for c in self.commands if c.startswith("set weight")]


@pytest.fixture
async def relay(
    haproxy: HAProxyInstance, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RecordingRelay]:
    relay = RecordingRelay(tmp_path_factory.mktemp("relay") / "r.sock", haproxy.admin_socket)
    server = await asyncio.start_unix_server(relay.handle, path=str(relay.path))
    yield relay
    server.close()
    with contextlib.suppress(Exception):
        await server.wait_closed()


async def test_rollback_lowers_canary_first(haproxy: HAProxyInstance, relay: RecordingRelay) -> None:
    impl = HAProxyTrafficRouter(router_spec(haproxy, admin_socket=str(relay.path)))
    await impl.set_weights(40)
    relay.commands.clear()
    relay.drop = lambda command: command.endswith("/stable 100")

    with pytest.raises(ApplicationError) as caught:
        await impl.set_weights(0)

    assert caught.value.type == errors.ROUTER_UNREACHABLE
    assert relay.set_weights() == ["set weight be_demo/canary 0", "set weight be_demo/stable 100"]
    # Half done, but the half that matters: the new version gets no more requests.
    assert weights(haproxy) == (60, 0)
    seen = await count_versions(haproxy, 50)
    assert seen == {STABLE_VERSION: 50}


async def test_rollback_from_full_canary_never_empties_the_backend(
    haproxy: HAProxyInstance, relay: RecordingRelay
) -> None:
    impl = HAProxyTrafficRouter(router_spec(haproxy, admin_socket=str(relay.path)))
    await impl.set_weights(100)
    relay.commands.clear()
    relay.drop = lambda command: command.endswith("/canary 0")

    with pytest.raises(ApplicationError):
        await impl.set_weights(0)

    assert relay.set_weights() == ["set weight be_demo/stable 100", "set weight be_demo/canary 0"]
    assert weights(haproxy) == (100, 100)  # half done, and every request still answered
    counts = await asyncio.to_thread(send_requests, haproxy.url + "/", 20)
    assert counts.by_status == {200: 20}

    relay.drop = lambda command: False
    state = await impl.set_weights(0)  # the activity's retry finishes the job
    assert (state.stable_weight, state.canary_weight) == (100, 0)


async def test_shifting_up_sets_canary_first(haproxy: HAProxyInstance, relay: RecordingRelay) -> None:
    impl = HAProxyTrafficRouter(router_spec(haproxy, admin_socket=str(relay.path)))
    relay.drop = lambda command: command.endswith("/stable 50")

    with pytest.raises(ApplicationError):
        await impl.set_weights(50)

    assert relay.set_weights() == ["set weight be_demo/canary 50", "set weight be_demo/stable 50"]
    # The canary got less than the target share (50 of 150), never more.
    assert weights(haproxy) == (100, 50)
