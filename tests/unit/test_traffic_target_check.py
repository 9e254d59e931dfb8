"""`start` refuses a rollout whose traffic target a running rollout of another service drives.

The running rollouts come from Temporal's listing; their keys from the memo, or for a rollout
started without it, from the input in its history. Temporal is the stand-in of test_client.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import TypedSearchAttributes
from temporalio.service import RPCStatusCode

from sluice.cli.exits import ExitCode, exit_code_for_error
from sluice.contracts.spec import HAProxyRouter
from sluice.runtime import client as client_module
from sluice.runtime.client import StartOutcome, TrafficTargetBusy
from sluice.runtime.history import RunRouter, SpecUnreadable, StartedWith
from tests.unit.test_client import EXAMPLE, NOW, StartingTemporal, client_of, rpc

KEY = "haproxy:/run/haproxy/admin.sock#be_checkout"  # examples/rollout.yaml's backend


class Running:
    """A running execution as the listing returns it."""

    def __init__(
        self,
        workflow_id: str,
        targets: list[str] | None,
        parent_id: str | None = None,
        workflow_type: str = "Rollout",
    ) -> None:
        self.id, self.run_id, self.parent_id, self.workflow_type = workflow_id, "r9", parent_id, workflow_type
        self.status, self.start_time, self.close_time = WorkflowExecutionStatus.RUNNING, NOW, None
        self.typed_search_attributes = TypedSearchAttributes.empty
        self._targets = targets

    async def memo_value(self, key: str, default: Any = None) -> Any:
        assert key == "traffic_targets"
        return default if self._targets is None else self._targets


def nothing_latest(*listed: Any) -> StartingTemporal:
    """No rollout for the service yet; `listed` are the running rollouts of other services."""
    return StartingTemporal(describe=[rpc(RPCStatusCode.NOT_FOUND, "workflow not found")], list=list(listed))


async def test_a_running_rollout_of_another_service_on_the_same_backend_refuses_the_start() -> None:
    temporal = nothing_latest(Running("rollout-payments", ["haproxy:/other.sock#be", KEY]))
    with pytest.raises(TrafficTargetBusy) as caught:
        await client_of(temporal).start(EXAMPLE, "ci")
    assert "start_workflow" not in temporal.calls
    assert caught.value.shared == [KEY]
    assert "rollout-payments" in caught.value.message and "Nothing was started" in caught.value.message
    assert exit_code_for_error(caught.value) == ExitCode.CONFLICT


async def test_force_does_not_override_the_one_rollout_per_target_rule() -> None:
    with pytest.raises(TrafficTargetBusy):
        await client_of(nothing_latest(Running("rollout-payments", [KEY]))).start(EXAMPLE, "ci", force=True)


@pytest.mark.parametrize(
    "listed",
    [
        Running("rollout-payments", ["haproxy:/run/haproxy/admin.sock#be_payments"]),
        Running("rollout-checkout-ring-eu", [KEY], parent_id="rollout-x"),  # its ring rollout counts
    ],
    ids=["other-backend", "ring-child"],
)
async def test_other_targets_and_ring_children_do_not_refuse(listed: Running) -> None:
    temporal = nothing_latest(listed)
    started = await client_of(temporal).start(EXAMPLE, "ci")
    assert started.outcome == StartOutcome.STARTED


async def test_a_rollout_without_the_memo_is_read_from_its_history(monkeypatch: pytest.MonkeyPatch) -> None:
    router = HAProxyRouter.model_validate(
        {
            "type": "haproxy",
            "admin_socket": "/run/haproxy/admin.sock",
            "backend": "be_checkout",
            "stable_server": "a",
            "canary_server": "b",
        }
    )
    read: list[str] = []

    async def from_history(temporal: Any, workflow_id: str, run_id: str, workflow_type: str) -> StartedWith:
        read.append(workflow_id)
        if workflow_id == "rollout-unreadable":
            raise SpecUnreadable("another codec key")
        return StartedWith(workflow_id, run_id, "legacy", "v1", [RunRouter(None, router)])

    monkeypatch.setattr(client_module, "started_with", from_history)
    temporal = nothing_latest(Running("rollout-unreadable", None), Running("rollout-legacy", None))
    with pytest.raises(TrafficTargetBusy, match="rollout-legacy"):
        await client_of(temporal).start(EXAMPLE, "ci")
    assert read == ["rollout-unreadable", "rollout-legacy"]


async def test_a_server_without_listing_skips_the_check() -> None:
    temporal = nothing_latest(rpc(RPCStatusCode.UNIMPLEMENTED, "no visibility"))
    assert (await client_of(temporal).start(EXAMPLE, "ci")).outcome == StartOutcome.STARTED


async def test_the_started_rollout_keeps_its_targets_in_its_memo() -> None:
    memos: list[dict[str, Any]] = []

    class Recording(StartingTemporal):
        async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
            memos.append(kwargs["memo"])
            return await super().start_workflow(*args, **kwargs)

    temporal = Recording(describe=[rpc(RPCStatusCode.NOT_FOUND, "workflow not found")])
    await client_of(temporal).start(EXAMPLE, "ci")
    assert memos[0]["traffic_targets"] == [KEY]
