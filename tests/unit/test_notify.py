"""Webhook targets and the bodies `activities/notify.py` sends (JSON and Slack)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sluice.activities.notify import render_body
from sluice.contracts.notify import NotifyTarget, RolloutEvent

AT = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def event(kind: str = "phase_changed", phase: str = "rolled_back") -> RolloutEvent:
    return RolloutEvent.model_validate(
        {
            "kind": kind,
            "event_id": "rollout-checkout/run-1/4",
            "service": "checkout",
            "version": "v2",
            "stable_version": "v1",
            "phase": phase,
            "previous_phase": "rolling_back",
            "message": "analysis failed; 100% of traffic is back on stable (verified)",
            "step": "bake 30s",
            "step_index": 1,
            "step_count": 3,
            "weights": {"stable": 100, "canary": 0},
            "failed": [
                {
                    "metric": "canary-5xx",
                    "verdict": "fail",
                    "detail": "5 of 21 were 5xx",
                    "at": AT.isoformat(),
                }
            ],
            "at": AT.isoformat(),
        }
    )


def test_a_target_needs_exactly_one_of_url_and_url_env() -> None:
    assert NotifyTarget(url_env="SLACK_URL").describe() == "$SLACK_URL"
    for bad in (
        {},
        {"url": "https://x.example/h", "url_env": "X"},
        {"url_env": "not a name"},
        {"url": "ftp://x"},
    ):
        with pytest.raises(ValidationError):
            NotifyTarget.model_validate(bad)


def test_json_and_slack_bodies() -> None:
    body = render_body("json", event(), "http://ui:8233/")
    assert body["kind"] == "phase_changed" and body["weights"] == {"stable": 100, "canary": 0}
    assert body["ui_url"] == "http://ui:8233/namespaces/default/workflows/rollout-checkout"
    slack = render_body("slack", event("verdict_failed", "progressing"), None)
    assert set(slack) == {"text"}
    assert slack["text"].startswith("*checkout v1 → v2: analysis failed (canary-5xx)*")
    assert "`canary-5xx`: fail, 5 of 21 were 5xx" in slack["text"]
