"""`start --wait`'s progress lines: only what changed, including a ring rollout's transitions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sluice.cli.render import Progress
from sluice.contracts.status import Phase, RingStatus, RolloutStatus, Weights


def status(rings: list[dict[str, Any]], **over: Any) -> RolloutStatus:
    data: dict[str, Any] = {
        "service": "checkout",
        "version": "v2",
        "stable_version": "v1",
        "spec_digest": "d",
        "phase": Phase.PROGRESSING,
        "message": "rolling out",
        "step_index": 0,
        "step_count": 2,
        "step": "ring eu",
        "started_at": datetime(2026, 11, 26, tzinfo=UTC),
        "rings": [RingStatus(workflow_id=f"rollout-checkout-ring-{r['name']}", **r) for r in rings],
        **over,
    }
    return RolloutStatus(**data)


def test_ring_transitions_are_printed_once_each() -> None:
    progress = Progress()
    first = progress.update(
        status(
            [
                {"name": "eu", "phase": Phase.PROGRESSING, "weights": Weights(stable=90, canary=10)},
                {"name": "us"},
            ]
        )
    )
    assert "ring eu: progressing" in first
    assert any(line.startswith("ring eu weights") and "10%" in line for line in first)
    assert not any("ring us" in line for line in first)  # pending rings are not announced
    same = progress.update(
        status(
            [
                {"name": "eu", "phase": Phase.PROGRESSING, "weights": Weights(stable=90, canary=10)},
                {"name": "us"},
            ]
        )
    )
    assert not any(line.startswith("ring") for line in same)
    later = progress.update(
        status(
            [
                {
                    "name": "eu",
                    "phase": Phase.PROMOTED,
                    "message": "all steps passed",
                    "weights": Weights(stable=0, canary=100),
                },
                {"name": "us", "phase": Phase.PROGRESSING},
            ]
        )
    )
    assert [line for line in later if line.startswith("ring")] == [
        "ring eu: promoted: all steps passed",
        "ring eu weights v1 0% · v2 100%",
        "ring us: progressing",
    ]
