"""Exit codes of the `sluice` command, and which one each of the client's typed errors gets."""

from __future__ import annotations

from enum import IntEnum

from sluice.contracts.status import Phase
from sluice.runtime.client import (
    AnotherRolloutRunning,
    ApprovalRefused,
    InvalidSpec,
    PromotedWithAnotherSpec,
    RefusedAtGate,
    RolloutEndedWithoutResult,
    RolloutNotFound,
    RolloutNotRunning,
    SluiceError,
    TrafficTargetBusy,
)


class ExitCode(IntEnum):
    """What a CI job can branch on; the numbers are part of the CLI's contract."""

    OK = 0
    """Valid input, command done, or the rollout was promoted (also: it already was, by a re-run)."""
    ROLLED_BACK = 1
    """The rollout rolled itself back (failing analysis or a step that failed for good)."""
    INVALID = 2
    """Invalid input: a bad spec or arguments, no (running) rollout for the service, or a verb the
    approval gate that waits refuses (`approve` by a non-approver, `resume`, `promote` by a non-approver)."""
    ABORTED = 3
    """An operator aborted the rollout (also with `abort --force`), or it was cancelled through Temporal."""
    CONFLICT = 4
    """Another rollout (a different version or spec) is running for the service, a running
    rollout of another service drives the same traffic target, or this version was already
    promoted with another spec (`start --force` runs it anyway)."""
    UNAVAILABLE = 5
    """Temporal could not be reached, the rollout failed, or another internal error."""


def exit_code_for(phase: Phase) -> ExitCode:
    """The exit code of `start --wait` for the phase a rollout ended in."""
    return {
        Phase.PROMOTED: ExitCode.OK,
        Phase.ROLLED_BACK: ExitCode.ROLLED_BACK,
        Phase.ABORTED: ExitCode.ABORTED,
    }.get(phase, ExitCode.UNAVAILABLE)


def exit_code_for_error(err: SluiceError) -> ExitCode:
    """The exit code for an error of `sluice.runtime.client`; unlisted ones (Temporal, no worker) are 5."""
    if isinstance(err, InvalidSpec | RolloutNotFound | RolloutNotRunning | ApprovalRefused | RefusedAtGate):
        return ExitCode.INVALID
    if isinstance(err, AnotherRolloutRunning | PromotedWithAnotherSpec | TrafficTargetBusy):
        return ExitCode.CONFLICT
    if isinstance(err, RolloutEndedWithoutResult) and err.how in ("cancelled", "force_aborted"):
        return ExitCode.ABORTED
    return ExitCode.UNAVAILABLE


class CliError(Exception):
    """A failure of the CLI's own checks, read as one or two plain sentences, never a traceback."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
