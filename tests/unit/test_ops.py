"""Pure parts of the operations work: notify targets and bodies, the codec, settings, the step summary."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sluice.activities.notify import render_body
from sluice.cli import ci
from sluice.contracts.notify import NotifyTarget, RolloutEvent
from sluice.contracts.status import MetricVerdict, Phase, RollbackState, RolloutStatus, Verdict, Weights
from sluice.runtime import codec, telemetry

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


def test_codec_round_trip_and_wrong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = bytes(range(32))
    monkeypatch.setenv(codec.KEY_ENV, base64.urlsafe_b64encode(key).decode().rstrip("="))
    assert codec.key_from_env() == key
    converter = codec.data_converter()
    payloads = asyncio.run(converter.encode(["spec", {"a": 1}]))
    assert all(p.metadata["encoding"] == codec.ENCODING for p in payloads)
    assert b"spec" not in payloads[0].data
    assert asyncio.run(converter.decode(payloads, [str, dict])) == ["spec", {"a": 1}]
    other = codec.EncryptionCodec(bytes(32))
    with pytest.raises(ValueError, match="encrypted with key"):
        asyncio.run(other.decode(payloads))
    monkeypatch.setenv(codec.KEY_ENV, "c2hvcnQ=")
    with pytest.raises(codec.CodecKeyError):
        codec.key_from_env()


def test_metrics_address_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(telemetry.METRICS_ADDRESS_ENV, raising=False)
    assert telemetry.metrics_address() is None
    monkeypatch.setenv(telemetry.METRICS_ADDRESS_ENV, "off")
    assert telemetry.metrics_address() is None
    monkeypatch.setenv(telemetry.METRICS_ADDRESS_ENV, "0.0.0.0:9464")
    assert telemetry.metrics_address() == "0.0.0.0:9464"
    monkeypatch.setenv(telemetry.METRICS_ADDRESS_ENV, "9464")
    with pytest.raises(ValueError, match="host:port"):
        telemetry.metrics_address()


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
