"""Every stable error type code Sluice raises as `ApplicationError(type=...)`, from activities,
workflows and update validators; the CLI and users match on these strings, so they never change."""

from __future__ import annotations

from typing import Final

ROUTER_UNREACHABLE: Final = "RouterUnreachable"
"""The router did not answer (socket missing, refused, timed out). Retryable."""

ROUTER_CONFIG: Final = "RouterConfig"
"""The router answered but the backend or a server does not exist. Not retryable."""

ROUTER_REJECTED: Final = "RouterRejected"
"""The router refused a command (e.g. a runtime API error line). Not retryable."""

TRAFFIC_NOT_APPLIED: Final = "TrafficNotApplied"
"""Weights read back differ from the ones set. Retryable: the next attempt sets them again."""

UNEXPECTED_SPLIT: Final = "UnexpectedSplit"
"""Preflight found a split a rollout cannot start from: the side named stable carries no
traffic, or the side named for the new version carries some (e.g. the sides are swapped after
a promotion). Not retryable; nothing was changed."""

NOTIFY_CONFIG: Final = "NotifyConfig"
"""A webhook's `url_env` variable is not set on the worker. Not retryable."""

NOTIFY_FAILED: Final = "NotifyFailed"
"""A webhook did not answer 2xx (or could not be reached). Retryable; never fails the rollout."""

NOT_WAITING_FOR_APPROVAL: Final = "NotWaitingForApproval"
"""An approval was sent while no approval gate waits. Rejected by the update's validator."""

NOT_AN_APPROVER: Final = "NotAnApprover"
"""An approval by someone the gate does not list. Rejected by the update's validator."""

APPROVAL_NOT_VERIFIED: Final = "ApprovalNotVerified"
"""A signed approval whose statement or signature did not verify, or a plain one at a gate that
requires a signed approval. Refused by the update (recorded as `approve_refused`)."""

ROLLBACK_FAILED: Final = "RollbackFailed"
"""A rollout's rollback hit a non-retryable router error: traffic may still reach the new
version. The rollout workflow fails with it, after saying so in its status."""

RING_FAILED: Final = "RingFailed"
"""A ring's rollout failed (e.g. its rollback could not complete); the ring rollout fails with it."""
