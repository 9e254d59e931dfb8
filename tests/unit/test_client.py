"""`sluice.runtime.client` without a server: which typed error each Temporal failure becomes,
which exit code the CLI gives it, and how `follow` rides out a lost connection.

Temporal's side is a small stand-in for the client and its workflow handles (the real
server is exercised in tests/e2e/test_client.py); it raises what the SDK raises.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import exceptions as temporal_errors
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from sluice.cli import main as cli
from sluice.cli.exits import ExitCode, exit_code_for_error
from sluice.contracts.spec import SpecIssue
from sluice.contracts.status import Phase, RolloutStatus
from sluice.runtime.client import (
    AnotherRolloutRunning,
    ApprovalRefused,
    ConnectionLost,
    Ended,
    InvalidSpec,
    NoWorker,
    PromotedWithAnotherSpec,
    Reconnected,
    RolloutEndedWithoutResult,
    RolloutNotFound,
    RolloutNotRunning,
    RolloutRecord,
    SluiceClient,
    SluiceError,
    StartOutcome,
    StartResult,
    StatusPolled,
    TemporalUnavailable,
    read_spec_file,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
WF = "rollout-checkout"
COMPLETED = WorkflowExecutionStatus.COMPLETED


def rpc(status: RPCStatusCode, message: str = "boom") -> RPCError:
    return RPCError(message, status, b"")


def rollout_status(
    phase: Phase = Phase.PROGRESSING, version: str = "v2", digest: str = "d1"
) -> RolloutStatus:
    return RolloutStatus(
        service="checkout",
        version=version,
        spec_digest=digest,
        phase=phase,
        message="",
        step_index=0,
        step_count=2,
        step="set weight 10%",
        started_at=NOW,
        finished_at=NOW if phase.is_final else None,
    )


def record(temporal_status: str = "completed") -> RolloutRecord:
    return RolloutRecord(
        workflow_id="rollout-checkout",
        run_id="r1",
        service="checkout",
        version="v2",
        phase="promoted",
        weight=100,
        temporal_status=temporal_status,
        started_at=NOW,
        closed_at=None if temporal_status == "running" else NOW,
    )


class FakeHandle:
    """A workflow handle whose calls run the given scripts (a value, or an exception to raise)."""

    def __init__(self, owner: FakeTemporal, workflow_id: str) -> None:
        self.owner = owner
        self.id = workflow_id

    async def describe(self) -> Any:
        return self.owner.next("describe")

    async def result(self, follow_runs: bool = True) -> RolloutStatus:
        value: RolloutStatus = self.owner.next("result")
        return value

    async def query(self, *args: Any, **kwargs: Any) -> RolloutStatus:
        value: RolloutStatus = self.owner.next("query")
        return value

    async def execute_update(self, *args: Any, **kwargs: Any) -> RolloutStatus:
        value: RolloutStatus = self.owner.next("update")
        return value


class FakeTemporal:
    """Stands in for `temporalio.client.Client`: each call kind answers from its own script."""

    namespace = "default"

    def __init__(self, **scripts: list[Any] | Callable[[], Any]) -> None:
        self.scripts = scripts
        self.calls: list[str] = []

    def next(self, kind: str) -> Any:
        self.calls.append(kind)
        script = self.scripts[kind]
        value = script() if callable(script) else (script.pop(0) if len(script) > 1 else script[0])
        if isinstance(value, BaseException):
            raise value
        return value

    def get_workflow_handle(self, workflow_id: str, **kwargs: Any) -> FakeHandle:
        return FakeHandle(self, workflow_id)

    def list_workflows(self, query: str = "", **kwargs: Any) -> Any:
        """The executions in the `list` script (none by default), or its exception."""
        self.calls.append("list")
        rows = self.scripts.get("list", [])

        async def listed() -> Any:
            for row in rows if isinstance(rows, list) else [rows]:
                if isinstance(row, BaseException):
                    raise row
                yield row

        return listed()


def client_of(temporal: FakeTemporal) -> SluiceClient:
    return SluiceClient(temporal, "127.0.0.1:7233")  # type: ignore[arg-type]


# --- errors and their exit codes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidSpec("bad", "spec.yaml", [SpecIssue(path="steps", message="no steps")]), ExitCode.INVALID),
        (RolloutNotFound("checkout", "default"), ExitCode.INVALID),
        (RolloutNotRunning("closed", record()), ExitCode.INVALID),
        (ApprovalRefused("rollout-checkout", "no gate waits"), ExitCode.INVALID),
        (AnotherRolloutRunning("v3 runs", record("running"), None, "d9"), ExitCode.CONFLICT),
        (PromotedWithAnotherSpec("other digest", rollout_status(Phase.PROMOTED), "d2"), ExitCode.CONFLICT),
        (RolloutEndedWithoutResult(WF, "cancelled", "was cancelled", None), ExitCode.ABORTED),
        (
            RolloutEndedWithoutResult("rollout-checkout", "terminated", "was terminated", None),
            ExitCode.UNAVAILABLE,
        ),
        (TemporalUnavailable("down", "127.0.0.1:7233"), ExitCode.UNAVAILABLE),
        (NoWorker(record("running")), ExitCode.UNAVAILABLE),
        (SluiceError("anything else"), ExitCode.UNAVAILABLE),
    ],
)
def test_every_error_has_its_exit_code(error: SluiceError, code: ExitCode) -> None:
    assert exit_code_for_error(error) == code
    assert error.message and str(error) == error.message


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (
            RPCStatusCode.UNAVAILABLE,
            "could not reach Temporal at 127.0.0.1:7233: boom; start one with `sluice dev`",
        ),
        (RPCStatusCode.DEADLINE_EXCEEDED, "could not reach Temporal"),
        (RPCStatusCode.UNAUTHENTICATED, "refused to describe rollout-checkout: boom. Check TEMPORAL_API_KEY"),
        (RPCStatusCode.PERMISSION_DENIED, "Check TEMPORAL_API_KEY"),
        (RPCStatusCode.INTERNAL, "could not describe rollout-checkout: boom"),
    ],
)
async def test_temporal_failures_become_temporal_unavailable(status: RPCStatusCode, words: str) -> None:
    client = client_of(FakeTemporal(describe=[rpc(status)]))
    with pytest.raises(TemporalUnavailable) as caught:
        await client.record("checkout")
    assert words in caught.value.message
    assert caught.value.address == "127.0.0.1:7233"


async def test_a_missing_workflow_is_rollout_not_found_but_a_missing_namespace_is_not() -> None:
    client = client_of(FakeTemporal(describe=[rpc(RPCStatusCode.NOT_FOUND, "workflow not found")]))
    with pytest.raises(RolloutNotFound) as caught:
        await client.status("checkout")
    assert caught.value.workflow_id == "rollout-checkout"
    assert "no workflow rollout-checkout in namespace default" in caught.value.message

    client = client_of(FakeTemporal(describe=[rpc(RPCStatusCode.NOT_FOUND, "Namespace nope is not found")]))
    with pytest.raises(TemporalUnavailable, match=r"has no namespace 'default'.*TEMPORAL_NAMESPACE"):
        await client.status("checkout")


async def test_no_answer_to_the_status_query_is_no_worker_with_the_record() -> None:
    client = client_of(FakeTemporal(query=[rpc(RPCStatusCode.DEADLINE_EXCEEDED)]))
    with pytest.raises(NoWorker) as caught:
        await client.status_of(record("running"))
    assert caught.value.record.weight == 100
    assert "sluice worker" in caught.value.message


async def test_a_refused_approval_is_approval_refused() -> None:
    refusal = WorkflowUpdateFailedError(
        temporal_errors.ApplicationError("not an approver", type="NotAnApprover")
    )
    client = client_of(FakeTemporal(query=[rollout_status()], update=[refusal]))
    client.record = _returns(record("running"))  # type: ignore[method-assign]
    with pytest.raises(ApprovalRefused) as caught:
        await client.approve("checkout", "mallory", "ship it")
    assert caught.value.message == "approval refused by rollout-checkout: not an approver"


async def test_signals_to_a_closed_rollout_are_refused_before_sending() -> None:
    client = client_of(FakeTemporal())
    client.record = _returns(record("completed"))  # type: ignore[method-assign]
    with pytest.raises(RolloutNotRunning, match="not running; there is nothing to approve"):
        await client.approve("checkout", "alice", "ok")
    assert client.temporal.calls == []  # type: ignore[attr-defined]


def _returns(value: Any) -> Callable[..., Any]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        return value

    return call


def test_spec_files_unreadable_or_invalid_are_invalid_spec(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec) as caught:
        read_spec_file(tmp_path / "missing.yaml")
    assert caught.value.issues == [] and "cannot read" in caught.value.message
    (tmp_path / "bad.yaml").write_text("service: checkout\nversion: v2\nsteps: []\n")
    with pytest.raises(InvalidSpec) as caught:
        read_spec_file(tmp_path / "bad.yaml")
    assert {i.path for i in caught.value.issues} >= {"steps"}


# --- start: re-runs are idempotent -----------------------------------------------------------


EXAMPLE = read_spec_file(ROOT / "examples" / "rollout.yaml")  # checkout v2
DIGEST = EXAMPLE.digest()


class LatestRun:
    """What `describe` returns for the service's latest run (the fields `start` reads)."""

    def __init__(self, status: WorkflowExecutionStatus) -> None:
        self.id, self.run_id, self.status, self.start_time = WF, "r1", status, NOW
        self.close_time = None if status == WorkflowExecutionStatus.RUNNING else NOW
        self.typed_search_attributes = TypedSearchAttributes.empty


class StartingTemporal(FakeTemporal):
    """Also records `start_workflow` calls; a new run gets the id `r2`."""

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("start_workflow")
        return type("Handle", (), {"id": kwargs["id"], "result_run_id": "r2"})()


def latest(status: WorkflowExecutionStatus, outcome: RolloutStatus | None = None) -> StartingTemporal:
    return StartingTemporal(describe=[LatestRun(status)], result=[outcome or rpc(RPCStatusCode.INTERNAL)])


@pytest.mark.parametrize(
    ("temporal", "outcome"),
    [
        (
            StartingTemporal(describe=[rpc(RPCStatusCode.NOT_FOUND, "workflow not found")]),
            StartOutcome.STARTED,
        ),
        (latest(COMPLETED, rollout_status(Phase.PROMOTED, digest=DIGEST)), StartOutcome.ALREADY_PROMOTED),
        (latest(COMPLETED, rollout_status(Phase.ROLLED_BACK, digest=DIGEST)), StartOutcome.STARTED),
        (latest(COMPLETED, rollout_status(Phase.ABORTED, digest=DIGEST)), StartOutcome.STARTED),
        (
            latest(COMPLETED, rollout_status(Phase.PROMOTED, version="v1", digest=DIGEST)),
            StartOutcome.STARTED,
        ),
        (latest(WorkflowExecutionStatus.TERMINATED), StartOutcome.STARTED),
        (latest(WorkflowExecutionStatus.CANCELED), StartOutcome.STARTED),
    ],
    ids=["first", "promoted", "after-rollback", "after-abort", "new-version", "terminated", "cancelled"],
)
async def test_start_runs_anew_unless_the_latest_run_promoted_this_spec(
    temporal: StartingTemporal, outcome: StartOutcome
) -> None:
    started = await client_of(temporal).start(EXAMPLE, "ci")
    assert started.outcome == outcome
    assert ("start_workflow" in temporal.calls) == (outcome == StartOutcome.STARTED)
    if outcome == StartOutcome.ALREADY_PROMOTED:
        assert started.run_id == "r1" and started.status is not None
        assert started.status.phase == Phase.PROMOTED


async def test_a_rollout_promoted_while_start_looks_is_not_started_again() -> None:
    # The first look sees it running, the attach finds it ended, the second look finds it promoted.
    running, completed = LatestRun(WorkflowExecutionStatus.RUNNING), LatestRun(COMPLETED)
    temporal = StartingTemporal(
        describe=[running, completed, completed], result=[rollout_status(Phase.PROMOTED, digest=DIGEST)]
    )
    started = await client_of(temporal).start(EXAMPLE, "ci")
    assert started.outcome == StartOutcome.ALREADY_PROMOTED
    assert "start_workflow" not in temporal.calls


async def test_the_promoted_version_with_another_spec_is_refused_unless_forced() -> None:
    temporal = latest(COMPLETED, rollout_status(Phase.PROMOTED, digest="0ther"))
    with pytest.raises(PromotedWithAnotherSpec) as caught:
        await client_of(temporal).start(EXAMPLE, "ci")
    assert "start_workflow" not in temporal.calls
    assert "0ther" in caught.value.message and EXAMPLE.digest() in caught.value.message
    assert "--force" in caught.value.message
    forced = await client_of(temporal).start(EXAMPLE, "ci", force=True)
    assert forced.outcome == StartOutcome.STARTED and forced.run_id == "r2"


# --- follow across a lost connection --------------------------------------------------------


async def test_follow_rides_out_a_lost_connection_then_reports_the_outcome() -> None:
    final = rollout_status(Phase.PROMOTED)
    down = rpc(RPCStatusCode.UNAVAILABLE, "tcp connect error")
    temporal = FakeTemporal(result=[down, down, final], query=[down, down, down, rollout_status()])
    events = [e async for e in client_of(temporal).follow("checkout", "r1", poll_interval=0.01)]
    kinds = [type(e) for e in events]
    assert kinds == [StatusPolled, ConnectionLost, Reconnected, Ended]  # nothing polled while lost
    assert events[1] == ConnectionLost("tcp connect error", 300.0)
    assert events[-1] == Ended(final)


async def test_follow_gives_up_after_its_bound_with_a_clear_message() -> None:
    down = rpc(RPCStatusCode.UNAVAILABLE, "tcp connect error")
    client = client_of(FakeTemporal(result=[down], query=[down]))
    with pytest.raises(TemporalUnavailable) as caught:
        await client.wait("checkout", reconnect_for=0.05)
    assert "did not answer again within 0.05s" in caught.value.message
    assert "sluice status checkout" in caught.value.message


async def test_follow_reports_a_cancelled_rollout_with_its_last_status() -> None:
    cancelled = WorkflowFailureError(cause=temporal_errors.CancelledError())
    last = rollout_status(Phase.ROLLING_BACK)
    client = client_of(FakeTemporal(result=[cancelled], query=[last]))
    with pytest.raises(RolloutEndedWithoutResult) as caught:
        await client.wait("checkout")
    assert caught.value.how == "cancelled" and caught.value.last_status == last
    assert exit_code_for_error(caught.value) == ExitCode.ABORTED


async def test_a_refusal_while_following_is_not_retried() -> None:
    client = client_of(FakeTemporal(result=[rpc(RPCStatusCode.PERMISSION_DENIED)], query=[rollout_status()]))
    with pytest.raises(TemporalUnavailable, match="refused to wait for rollout-checkout"):
        await client.wait("checkout")


# --- the CLI prints what the client returns -------------------------------------------------


@pytest.fixture
def promoted_already(monkeypatch: pytest.MonkeyPatch) -> Iterator[RolloutStatus]:
    """`SluiceClient.connect` gives a client whose `start` finds this spec promoted."""
    final = rollout_status(Phase.PROMOTED)

    class Promoted(SluiceClient):
        async def start(self, spec: Any, started_by: str = "", *, force: bool = False) -> StartResult:
            if force:
                raise AssertionError("not for --force")
            return StartResult(
                StartOutcome.ALREADY_PROMOTED, spec.workflow_id, "r1", spec.digest(), NOW, final
            )

    async def connect(cls: type[SluiceClient], *args: Any, **kwargs: Any) -> SluiceClient:
        return Promoted(FakeTemporal(), "127.0.0.1:7233")  # type: ignore[arg-type]

    monkeypatch.setattr(SluiceClient, "connect", classmethod(connect))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    yield final


@pytest.mark.parametrize("wait", [False, True])
def test_start_of_a_promoted_spec_says_so_and_exits_0(
    promoted_already: RolloutStatus, wait: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(ROOT / "examples" / "rollout.yaml")
    code, _ = cli.run_cli(["start", "-f", spec, *(["--wait"] if wait else [])])
    out = capsys.readouterr().out
    assert code == 0
    assert "is already promoted with this spec" in out and "nothing to do" in out
    assert ("checkout v2: promoted." in out) == wait


@pytest.mark.parametrize("wait", [False, True])
def test_start_of_a_promoted_spec_in_json(
    promoted_already: RolloutStatus, wait: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(ROOT / "examples" / "rollout.yaml")
    code, _ = cli.run_cli(["start", "-f", spec, "--output", "json", *(["--wait"] if wait else [])])
    printed = capsys.readouterr()
    data = json.loads(printed.out)
    assert code == 0
    assert "already promoted" in printed.err
    if wait:
        assert data["phase"] == "promoted"  # the final status, as `start --wait` prints it
    else:
        assert data["outcome"] == "already_promoted" and data["status"]["phase"] == "promoted"


def test_client_errors_reach_the_cli_as_one_line_and_their_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def connect(cls: type[SluiceClient], *args: Any, **kwargs: Any) -> SluiceClient:
        raise PromotedWithAnotherSpec(
            "v2 was promoted with spec digest d1; this one is d2", rollout_status(), "d2"
        )

    monkeypatch.setattr(SluiceClient, "connect", classmethod(connect))
    code, _ = cli.run_cli(["start", "-f", str(ROOT / "examples" / "rollout.yaml")])
    printed = capsys.readouterr()
    assert code == ExitCode.CONFLICT
    assert printed.err == "sluice start: v2 was promoted with spec digest d1; this one is d2\n"
    assert printed.out == ""
