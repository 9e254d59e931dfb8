"""Names the worker, the workflow and the CLI must agree on."""

from __future__ import annotations

from typing import Final

TASK_QUEUE: Final = "sluice"
WORKFLOW_TYPE: Final = "Rollout"
RING_WORKFLOW_TYPE: Final = "RingRollout"
SIGNAL_PAUSE: Final = "pause"
SIGNAL_RESUME: Final = "resume"
SIGNAL_PROMOTE: Final = "promote"
SIGNAL_ABORT: Final = "abort"
QUERY_STATUS: Final = "status"
UPDATE_APPROVE: Final = "approve"
SIGNAL_APPROVE: Final = "approve"
"""The same approval as a signal, for the Web UI's signal dialog; refusals are recorded, not raised."""

METRIC_ROLLBACK_SECONDS: Final = "sluice_rollback_seconds"
"""Histogram the workflow records for each rollback (see `sluice.workflows.observe`)."""
ROLLBACK_BUCKETS: Final = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
"""Buckets of `sluice_rollback_seconds` (the worker passes them to the Prometheus exporter)."""
