"""Exit codes of the `sluice` command and the one exception that carries them to `main`."""

from __future__ import annotations

from enum import IntEnum

from sluice.contracts.status import Phase


class ExitCode(IntEnum):
    """What a CI job can branch on; the numbers are part of the CLI's contract."""

    OK = 0
    """Valid input, command done, or the rollout was promoted."""
    ROLLED_BACK = 1
    """The rollout rolled itself back (failing analysis or a step that failed for good)."""
    INVALID = 2
    """Invalid input: a bad spec or arguments, or no (running) rollout for the service."""
    ABORTED = 3
    """An operator aborted the rollout, or it was cancelled through Temporal."""
    CONFLICT = 4
    """Another rollout (a different version or spec) is running for the service."""
    UNAVAILABLE = 5
    """Temporal could not be reached, the rollout failed, or another internal error."""


def exit_code_for(phase: Phase) -> ExitCode:
    """The exit code of `start --wait` for the phase a rollout ended in."""
    return {
        Phase.PROMOTED: ExitCode.OK,
        Phase.ROLLED_BACK: ExitCode.ROLLED_BACK,
        Phase.ABORTED: ExitCode.ABORTED,
    }.get(phase, ExitCode.UNAVAILABLE)


class CliError(Exception):
    """A failure the user should read as one or two plain sentences, never a traceback."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
