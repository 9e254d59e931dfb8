"""Delivery figures (sluice.runtime.insights) on hand-built rollouts, each checked by hand."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sluice.cli.report import parse_window, render_markdown, render_story_text, render_text, seconds
from sluice.cli.report_html import render_html
from sluice.contracts.status import (
    MetricVerdict,
    OperatorAction,
    Phase,
    RollbackState,
    RolloutStatus,
    Verdict,
)
from sluice.runtime.insights import (
    PhaseSpan,
    RolloutRun,
    RunTimeline,
    Tick,
    WeightPoint,
    bound_value,
    cause_of,
    facts_of,
    median,
    p90,
    reason_key,
    story_of,
    summarize,
)

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday


def t(seconds: float, day: int = 0) -> datetime:
    return T0 + timedelta(days=day, seconds=seconds)


def verdict(metric: str, kind: Verdict, at: datetime, value: float = 0.5) -> MetricVerdict:
    return MetricVerdict(metric=metric, verdict=kind, value=value, bound="<= 0.05", detail="x", at=at)


def action(kind: Any, at: datetime, by: str = "alice", reason: str = "r") -> OperatorAction:
    return OperatorAction(action=kind, reason=reason, by=by, at=at, step_index=1)


def run(
    service: str,
    version: str,
    phase: Phase,
    started: datetime,
    finished: datetime | None,
    *,
    digest: str = "",
    temporal: str = "completed",
    timeline: RunTimeline | None = None,
    **fields: Any,
) -> RolloutRun:
    status = RolloutStatus(
        service=service,
        version=version,
        stable_version="v0",
        spec_digest=digest or f"digest-{version}",
        phase=phase,
        message=fields.pop("message", "done"),
        step_index=0,
        step_count=3,
        step="",
        started_at=started,
        finished_at=finished,
        **fields,
    )
    return RolloutRun(
        workflow_id=f"rollout-{service}",
        run_id=f"run-{service}-{version}-{started.day}",
        temporal_status=temporal,
        status=status,
        timeline=timeline,
    )


def rollback(reason: str, started: datetime, verified: datetime | None) -> RollbackState:
    return RollbackState(reason=reason, started_at=started, verified_at=verified)


ANALYSIS_REASON = "analysis failed (canary-5xx: 5 of 21 responses were 5xx (23.81%), above the 2% limit)"


def week_of_rollouts() -> list[RolloutRun]:
    r9_timeline = RunTimeline(
        phases=[
            PhaseSpan(phase="progressing", start=t(0, 5), end=t(5, 5)),
            PhaseSpan(phase="paused", start=t(5, 5), end=t(35, 5)),
            PhaseSpan(phase="awaiting_approval", start=t(35, 5), end=t(95, 5)),
            PhaseSpan(phase="progressing", start=t(95, 5), end=t(96, 5)),
            PhaseSpan(phase="rolling_back", start=t(96, 5), end=t(97, 5)),
            PhaseSpan(phase="rolled_back", start=t(97, 5), end=t(97, 5)),
        ],
        weights=[
            WeightPoint(at=t(1, 5), stable=100, canary=0, source="preflight"),
            WeightPoint(at=t(2, 5), stable=90, canary=10, source="set_traffic"),
            WeightPoint(at=t(21, 5), stable=100, canary=0, source="rollback"),
        ],
        ticks=[
            Tick(number=1, at=t(5, 5), verdicts=[verdict("latency", Verdict.PASS, t(5, 5), 0.01)]),
            Tick(number=2, at=t(10, 5), verdicts=[verdict("latency", Verdict.FAIL, t(10, 5))]),
            Tick(number=3, at=t(20, 5), verdicts=[verdict("latency", Verdict.FAIL, t(20, 5))]),
        ],
    )
    return [
        # r1: promoted in 600 s, paused 60 s (from its actions: no timeline).
        run(
            "checkout",
            "v1",
            Phase.PROMOTED,
            t(0),
            t(600),
            actions=[action("pause", t(100)), action("resume", t(160))],
        ),
        # r2: rolled back by analysis; first failure at +120 s, verified at +122.5 s.
        run(
            "checkout",
            "v2",
            Phase.ROLLED_BACK,
            t(0, 1),
            t(123, 1),
            digest="d2",
            verdicts=[
                verdict("canary-5xx", Verdict.FAIL, t(120, 1)),
                verdict("smoke", Verdict.PASS, t(120, 1)),
            ],
            rollback=rollback(ANALYSIS_REASON, t(121, 1), t(122.5, 1)),
        ),
        # r3: the same version and digest promoted a day later in 300 s: r2 is suspicious.
        run("checkout", "v2", Phase.PROMOTED, t(0, 2), t(300, 2), digest="d2"),
        # r4: aborted by alice; decision at +50 s, verified 1 s later.
        run(
            "payments",
            "v7",
            Phase.ABORTED,
            t(0, 3),
            t(52, 3),
            actions=[action("abort", t(50, 3), reason="wrong build")],
            rollback=rollback("aborted by alice: wrong build", t(50, 3), t(51, 3)),
        ),
        # r5: cancelled through Temporal; the rollback took 4 s.
        run(
            "payments",
            "v8",
            Phase.ABORTED,
            t(0, 4),
            t(15, 4),
            actions=[action("cancel", t(10, 4), by="temporal")],
            rollback=rollback("the workflow was cancelled", t(10, 4), t(14, 4)),
        ),
        # r6: preflight failed: traffic never moved, no time to restore.
        run(
            "payments",
            "v9",
            Phase.ROLLED_BACK,
            t(3600, 4),
            t(3601, 4),
            message="preflight failed, traffic was not touched: no server canary",
        ),
        # r7: still running; r8: terminated (no outcome).
        run("checkout", "v3", Phase.PROGRESSING, t(0, 6), None, temporal="running"),
        run("checkout", "v4", Phase.PAUSED, t(100, 6), None, temporal="terminated"),
        # r9: rolled back by analysis after a second failing tick; read with its timeline.
        run(
            "payments",
            "v10",
            Phase.ROLLED_BACK,
            t(0, 5),
            t(97, 5),
            verdicts=[verdict("latency", Verdict.FAIL, t(20, 5))],
            rollback=rollback("analysis failed (latency: p99 0.8s above 0.5s)", t(20.5, 5), t(21, 5)),
            timeline=r9_timeline,
        ),
    ]


@pytest.fixture
def report() -> Any:
    before = run("checkout", "v0", Phase.PROMOTED, t(-60), t(-1))  # outside the window
    return summarize([before, *week_of_rollouts()], since=T0, until=t(0, 7))


def test_counts_and_rates(report: Any) -> None:
    o = report.overall
    assert (o.rollouts, o.running, o.unknown, o.finished) == (9, 1, 1, 7)
    assert (o.promoted, o.rolled_back, o.aborted, o.failed) == (2, 3, 2, 0)
    assert o.change_failure_rate == pytest.approx(5 / 7)
    assert o.deployments_per_week == pytest.approx(2.0)
    assert o.rollouts_per_week == pytest.approx(9.0)
    assert report.window_days == 7


def test_time_to_restore_from_the_first_failing_verdict(report: Any) -> None:
    # r2 2.5 s, r4 1 s (decision to verified), r5 4 s, r9 21 - 10 = 11 s (its first failing tick).
    ttr = report.overall.time_to_restore
    assert (ttr.count, ttr.median_s, ttr.p90_s, ttr.max_s) == (4, 3.25, 11.0, 11.0)
    restore = [(f.version, f.restore_seconds) for f in report.rollouts]  # oldest first
    assert restore == [
        ("v1", None),
        ("v2", 2.5),
        ("v2", None),
        ("v7", 1.0),
        ("v8", 4.0),
        ("v9", None),
        ("v10", 11.0),
        ("v3", None),
        ("v4", None),
    ]


def test_without_a_timeline_the_last_ticks_failure_is_the_first_known() -> None:
    r9 = week_of_rollouts()[-1].model_copy(update={"timeline": None})
    assert facts_of(r9).restore_seconds == pytest.approx(1.0)  # 21 - 20


def test_time_to_promotion_and_waits(report: Any) -> None:
    o = report.overall
    assert (o.time_to_promotion.count, o.time_to_promotion.median_s, o.time_to_promotion.p90_s) == (
        2,
        450,
        600,
    )
    # Paused: r1 60 s from its actions, r9 30 s from its timeline; approval: r9 60 s.
    assert (o.paused.count, o.paused_total_s, o.paused.median_s, o.paused.p90_s) == (2, 90, 45, 60)
    assert (o.awaiting_approval.count, o.awaiting_approval_total_s) == (1, 60)


def test_why_and_who(report: Any) -> None:
    o = report.overall
    assert o.rollback_causes == {"analysis": 2, "cancel": 1, "operator": 1, "preflight": 1}
    assert list(o.rollback_causes) == ["analysis", "cancel", "operator", "preflight"]  # most first
    assert o.rollback_by == {"alice": 1, "temporal": 1}
    assert o.rollback_metrics == {"canary-5xx": 1, "latency": 1}
    assert o.rollback_reasons == {
        "aborted by alice: wrong build": 1,
        "analysis failed (canary-5xx: N of N responses were Nxx (N%), above the N% limit)": 1,
        "analysis failed (latency: p99 Ns above Ns)": 1,
        "preflight failed, traffic was not touched: no server canary": 1,
        "the workflow was cancelled": 1,
    }


def test_per_service(report: Any) -> None:
    by = {s.service: s for s in report.services}
    assert list(by) == ["checkout", "payments"]
    checkout, payments = by["checkout"], by["payments"]
    assert (checkout.rollouts, checkout.finished, checkout.running, checkout.unknown) == (5, 3, 1, 1)
    assert checkout.change_failure_rate == pytest.approx(1 / 3)
    assert checkout.deployments_per_week == pytest.approx(2.0)
    assert (checkout.time_to_restore.count, checkout.time_to_restore.median_s) == (1, 2.5)
    assert payments.change_failure_rate == 1.0
    assert (payments.time_to_restore.median_s, payments.time_to_restore.p90_s) == (4.0, 11.0)
    assert payments.time_to_promotion.count == 0 and payments.time_to_promotion.median_s is None


def test_weeks_and_suspicious(report: Any) -> None:
    assert [(w.week, w.started, w.promoted, w.change_failures) for w in report.weeks] == [
        ("2026-11-02", 9, 2, 5),
        ("2026-11-09", 0, 0, 0),
    ]
    [s] = report.suspicious
    assert (s.service, s.version, s.spec_digest, s.cause, s.metrics) == (
        "checkout",
        "v2",
        "d2",
        "analysis",
        ["canary-5xx"],
    )
    assert (s.rolled_back_at, s.promoted_at) == (t(123, 1), t(300, 2))


def test_a_later_promotion_with_another_spec_is_not_suspicious() -> None:
    runs = week_of_rollouts()
    runs[2].status.spec_digest = "d3"
    assert summarize(runs, T0, t(0, 7)).suspicious == []


def test_service_filter_and_empty_window() -> None:
    only = summarize(week_of_rollouts(), T0, t(0, 7), service="payments")
    assert only.overall.rollouts == 4 and [s.service for s in only.services] == ["payments"]
    empty = summarize([], T0, t(0, 7))
    assert empty.overall.change_failure_rate is None and empty.overall.time_to_restore.median_s is None


@pytest.mark.parametrize(
    ("values", "mid", "high"),
    [([], None, None), ([3.0], 3.0, 3.0), ([4.0, 1.0], 2.5, 4.0), (list(map(float, range(1, 11))), 5.5, 9.0)],
)
def test_median_and_nearest_rank_p90(values: list[float], mid: float | None, high: float | None) -> None:
    assert median(values) == mid and p90(values) == high


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        ("approval gate timed out: no approval within 1h; on_timeout: rollback", "approval_timeout"),
        ("a step failed for good: router refused", "step_failure"),
        ("3 inconclusive analysis ticks in a row (latency: too few requests)", "analysis"),
        ("traffic was moved by someone else", "other"),
    ],
)
def test_causes_from_the_rollback_reason(reason: str, cause: str) -> None:
    r = run("s", "v", Phase.ROLLED_BACK, T0, t(1), rollback=rollback(reason, T0, t(1)))
    assert cause_of(r.status) == (cause, None)


def test_reason_key_and_bound_value() -> None:
    assert (
        reason_key("analysis failed (x: 5 of 21); 100% of traffic is back on stable")
        == "analysis failed (x: N of N)"
    )
    assert bound_value("<= 0.02") == ("<=", 0.02)
    assert bound_value("e < 20") == ("<", 20.0)
    assert bound_value("") is None


def test_story_orders_everything_on_one_axis() -> None:
    r9 = week_of_rollouts()[-1]
    story = story_of(r9)
    assert [e.kind for e in story.events][-1] == "decision"
    times = [e.at for e in story.events[:-1]]
    assert times == sorted(times)
    assert sum(e.kind == "tick" for e in story.events) == 3
    assert story.facts.restore_seconds == 11.0
    lines = render_story_text(story)
    assert any("analysis #2: latency fail 0.5 (<= 0.05)" in line for line in lines)
    assert "time to restore: 11s (first failing verdict → 100% stable verified)" in lines


def test_text_markdown_and_html_show_the_same_figures(report: Any) -> None:
    text = "\n".join(render_text(report))
    assert "71.4%" in text and "3.25s / 11s (4)" in text and "Possible false rollbacks" in text
    markdown = "\n".join(render_markdown(report))
    assert "| **all** | 9 | 2 | 3 | 2 | 0 | 1 | 71.4% | 2.00 |" in markdown
    page = render_html(report)
    assert page.count("<svg") == 4 and 'data-figure="change_failure_rate"><b>71.4%</b>' in page
    assert f'data-figure="time_to_restore.median_s"><b>{seconds(3.25)}</b>' in page
    urls = set(re.findall(r"https?://[^\"'\s<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    story_page = render_html(story_of(week_of_rollouts()[-1]))
    assert story_page.count("<svg") == 1 and 'id="sluice-report"' in story_page


def test_parse_window() -> None:
    assert parse_window("30d") == timedelta(days=30)
    assert parse_window("12h") == timedelta(hours=12)
    assert parse_window("2w") == timedelta(days=14)
    with pytest.raises(Exception, match="not a window"):
        parse_window("30")


def test_report_arguments_are_checked_before_connecting() -> None:
    from tests.unit.test_cli import closed_port, sluice

    env = {"TEMPORAL_ADDRESS": f"127.0.0.1:{closed_port()}"}
    bad_window = sluice("report", "--since", "30", env=env)
    assert bad_window.returncode == 2 and "not a window" in bad_window.stderr
    lone_run = sluice("report", "--run-id", "abc", env=env)
    assert lone_run.returncode == 2 and "--run-id needs --rollout" in lone_run.stderr
    unreachable = sluice("report", "--since", "7d", env=env)
    assert unreachable.returncode == 5 and unreachable.stderr.count("\n") == 1, unreachable.stderr
    assert unreachable.stdout == "" and "Traceback" not in unreachable.stderr
