"""Stable error type codes raised by activities as `ApplicationError(type=...)`."""

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

ALL: Final = (ROUTER_UNREACHABLE, ROUTER_CONFIG, ROUTER_REJECTED, TRAFFIC_NOT_APPLIED)
