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


def test_status_says_how_old_the_verdicts_and_weights_are_and_shows_drift_loudly() -> None:
    from sluice.cli.render import render_status
    from sluice.contracts.status import Drift, MetricVerdict, Verdict
    from sluice.workflows.render import current_details

    at = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    verdict = MetricVerdict(metric="canary-5xx", verdict=Verdict.PASS, detail="ok", at=at)
    drift = Drift(
        expected=Weights(stable=90, canary=10),
        found=Weights(stable=100, canary=0),
        since=at,
        at=at,
        action="pause",
        count=3,
    )
    s = status(
        [],
        weights=Weights(stable=100, canary=0),
        weights_at=at,
        verdicts=[verdict],
        verdicts_at=at,
        drift=drift,
    )
    text = "\n".join(render_status(s, now=datetime(2026, 11, 26, 12, 0, 42, tzinfo=UTC)))
    assert "v1 100% · v2 0% (read 42s ago)" in text
    assert "last verdicts (recorded 12:00:00 UTC, 42s ago):" in text
    assert "TRAFFIC DRIFTED since" in text and "expected v1 90% · v2 10%, found v1 100% · v2 0%" in text
    assert "(on_drift: pause)" in text
    details = current_details(s)
    assert "**TRAFFIC DRIFTED**: expected stable 90% · new 10%, found stable 100% · new 0%" in details
    # Once resolved, a note instead of an alarm; a final status shows no ages.
    resolved = drift.model_copy(update={"resolved_at": at, "action": "reapply", "reapplied": 1})
    done = s.model_copy(update={"drift": resolved, "phase": Phase.PROMOTED})
    text = "\n".join(render_status(done, now=datetime(2026, 11, 26, 13, 0, 0, tzinfo=UTC)))
    assert "TRAFFIC DRIFTED" not in text and "reapply, re-applied 1x, back at 12:00:00" in text
    assert "ago" not in text
    assert "TRAFFIC DRIFTED" not in current_details(done) and "re-applied 1×" in current_details(done)


def test_progress_announces_a_drift_and_its_end() -> None:
    from sluice.contracts.status import Drift

    at = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    drift = Drift(
        expected=Weights(stable=90, canary=10),
        found=Weights(stable=100, canary=0),
        since=at,
        at=at,
        action="reapply",
    )
    progress = Progress()
    progress.update(status([]))
    lines = progress.update(status([], drift=drift))
    assert any(line.startswith("TRAFFIC DRIFTED since") for line in lines), lines
    assert progress.update(status([], drift=drift)) == []
    done = drift.model_copy(update={"resolved_at": at, "reapplied": 1})
    assert any("re-applied 1x" in line for line in progress.update(status([], drift=done)))
