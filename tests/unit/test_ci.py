"""`starter/ci.py`: the GitHub step summary of a rollout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sluice.cli import ci
from sluice.contracts.status import MetricVerdict, Phase, RollbackState, RolloutStatus, Verdict, Weights

AT = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def test_step_summary_of_a_rollback(monkeypatch: pytest.MonkeyPatch) -> None:
    status = RolloutStatus(
        service="checkout",
        version="v2",
        stable_version="v1",
        spec_digest="abc",
        phase=Phase.ROLLED_BACK,
        message="analysis failed | 100% stable",
        step_index=1,
        step_count=3,
        step="bake 30s",
        weights=Weights(stable=100, canary=0),
        verdicts=[
            MetricVerdict(
                metric="canary-5xx", verdict=Verdict.FAIL, value=0.2, bound="<= 0.02", detail="5 of 21", at=AT
            )
        ],
        rollback=RollbackState(
            reason="analysis failed", started_at=AT, verified_at=AT + timedelta(milliseconds=800)
        ),
        started_at=AT - timedelta(minutes=1),
        finished_at=AT + timedelta(seconds=1),
    )
    text = ci.markdown_summary(
        status, None, "http://ui/namespaces/default/workflows/rollout-checkout", "ab12"
    )
    assert "### ↩️ Sluice: checkout v1 → v2: **rolled_back**" in text
    assert "analysis failed \\| 100% stable" in text  # a pipe cannot break the table
    assert "| canary-5xx | fail | 0.2 | <= 0.02 |" in text
    assert "0.80s after it began" in text and "`ab12`" in text
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert ci.append_step_summary(text) is None
