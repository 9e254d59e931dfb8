"""The pure tick judgement: failure and inconclusive limits."""

from __future__ import annotations

from datetime import UTC, datetime

from sluice.contracts.spec import AnalysisSpec
from sluice.contracts.status import AnalysisCounters, MetricVerdict, Verdict
from sluice.workflows.judge import judge, tick_verdict

METRIC = {"name": "m", "provider": "haproxy", "max": 0.01}


def spec(**kw: object) -> AnalysisSpec:
    return AnalysisSpec.model_validate({"metrics": [METRIC], **kw})


def v(verdict: Verdict, name: str = "m") -> MetricVerdict:
    return MetricVerdict(metric=name, verdict=verdict, detail=f"{name} {verdict}", at=datetime.now(UTC))


def test_tick_verdict_fail_beats_inconclusive_beats_pass() -> None:
    assert tick_verdict([v(Verdict.PASS), v(Verdict.INCONCLUSIVE), v(Verdict.FAIL)]) is Verdict.FAIL
    assert tick_verdict([v(Verdict.PASS), v(Verdict.INCONCLUSIVE)]) is Verdict.INCONCLUSIVE
    assert tick_verdict([v(Verdict.PASS), v(Verdict.PASS)]) is Verdict.PASS
    assert tick_verdict([]) is Verdict.INCONCLUSIVE  # nothing measured is never a pass


def test_first_failure_rolls_back_with_zero_limit() -> None:
    counters, decision = judge(spec(), AnalysisCounters(), [v(Verdict.PASS, "a"), v(Verdict.FAIL, "b")])
    assert decision.action == "rollback"
    assert "b: b fail" in decision.reason and "a:" not in decision.reason
    assert counters.failed_ticks == 1 and counters.ticks == 1


def test_failure_limit_counts_total_failing_ticks() -> None:
    s, c = spec(failure_limit=2), AnalysisCounters()
    actions = []
    for verdict in [Verdict.FAIL, Verdict.PASS, Verdict.FAIL, Verdict.PASS, Verdict.FAIL]:
        c, d = judge(s, c, [v(verdict)])
        actions.append(d.action)
    assert actions == ["continue"] * 4 + ["rollback"]
    assert c.failed_ticks == 3 and c.ticks == 5


def test_inconclusive_limit_counts_a_run_and_a_pass_resets_it() -> None:
    s, c = spec(inconclusive_limit=2), AnalysisCounters()
    for verdict in [Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE, Verdict.PASS, Verdict.INCONCLUSIVE]:
        c, d = judge(s, c, [v(verdict)])
        assert d.action == "continue"
    assert c.consecutive_inconclusive == 1
    c, d = judge(s, c, [v(Verdict.INCONCLUSIVE)])
    assert d.action == "continue"
    c, d = judge(s, c, [v(Verdict.INCONCLUSIVE)])
    assert d.action == "rollback" and "3 inconclusive analysis ticks in a row" in d.reason
    assert c.consecutive_inconclusive == 0


def test_on_inconclusive_pause() -> None:
    _, d = judge(
        spec(inconclusive_limit=0, on_inconclusive="pause"),
        AnalysisCounters(),
        [v(Verdict.INCONCLUSIVE)],
    )
    assert d.action == "pause"
