"""`sluice backtest`: the workflow's judgement on hand-made recorded counters."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pytest

from sluice.activities.providers._compare import compare_verdict
from sluice.activities.sequential import Totals
from sluice.cli.main import run_cli
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import AnalysisSpec, parse_spec
from sluice.contracts.status import Verdict
from sluice.runtime.backtest import InvalidData, TickResult, backtest

ROUTER = {
    "type": "haproxy",
    "admin_socket": "/run/haproxy/admin.sock",
    "backend": "be",
    "stable_server": "stable",
    "canary_server": "canary",
}
ERRORS = {"name": "errors", "provider": "haproxy", "compare": "stable", "min_requests": 100}
LATENCY = {
    "name": "latency",
    "provider": "prometheus",
    "address": "http://127.0.0.1:9090",
    "compare": "stable",
    "histogram": 'h_bucket{version="{{version}}"}',
    "min_requests": 100,
}


def spec(*metrics: dict[str, Any], **analysis: Any) -> dict[str, Any]:
    return {
        "service": "checkout",
        "version": "v2",
        "stable_version": "v1",
        "router": ROUTER,
        "steps": [{"set_weight": 10}, {"pause": "1m"}],
        "analysis": {"interval": "5s", "metrics": list(metrics or [ERRORS]), **analysis},
    }


def analysis(*metrics: dict[str, Any], **options: Any) -> AnalysisSpec:
    a = parse_spec(spec(*metrics, **options)).analysis
    assert a is not None
    return a


def series(version: str, requests: float, errors: float, instance: str | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"version": version, "requests": requests, "errors": errors}
    if instance is not None:
        s["instance"] = instance
    return s


def errors_run(
    per_tick: Iterable[tuple[float, float, float, float]], run: str = "a", start: float = 0
) -> list[str]:
    """Records of one run from per-tick increments (canary req, canary err, stable req, stable err)."""
    c_req = c_err = s_req = s_err = 0.0
    lines = [record(run, 0, [series("canary", 0, 0), series("stable", 5000, 50)])]
    s_req, s_err = 5000.0, 50.0  # stable has history before the rollout: the t = 0 baseline
    for k, (cr, ce, sr, se) in enumerate(per_tick, start=1):
        c_req, c_err, s_req, s_err = c_req + cr, c_err + ce, s_req + sr, s_err + se
        lines.append(
            record(run, start + 5 * k, [series("canary", c_req, c_err), series("stable", s_req, s_err)])
        )
    return lines


def record(run: str, t: float, errors: list[dict[str, Any]], weight: float = 10, name: str = "errors") -> str:
    return json.dumps({"run": run, "t": t, "weight": weight, "metrics": {name: errors}})


def judged(a: AnalysisSpec, lines: list[str]) -> list[TickResult]:
    return list(backtest(a, lines))


def test_a_clear_regression_rolls_back_with_the_failing_numbers() -> None:
    results = judged(analysis(), errors_run([(100, 8, 900, 9)] * 20))
    assert results[0].baseline and results[0].decision.action == "continue"
    last = results[-1]
    assert last.decision.action == "rollback" and last.tick is Verdict.FAIL
    assert "worse than stable by more than 10%" in last.decision.reason
    assert len(results) < 21, "a run stops after its rollback"
    assert all(r.decision.action == "continue" for r in results[:-1])


def test_a_a_continues_and_may_end_a_bake_once_enough_traffic_passed() -> None:
    # canary exactly as good as stable (1% each), 100 canary requests per tick
    results = judged(analysis(), errors_run([(100, 1, 900, 9)] * 30))
    ticks = results[1:]
    assert all(r.decision.action == "continue" for r in results)
    assert [r.tick for r in ticks] == [Verdict.PASS] * 30
    assert all(r.may_end_bake for r in ticks) and not results[0].may_end_bake
    assert ticks[-1].verdicts[0].counts["new_requests"] == 3000
    assert ticks[-1].verdicts[0].counts["stable_requests"] == 27000  # not stable's history before t = 0


def test_too_little_data_is_inconclusive_and_runs_into_the_budget() -> None:
    # 10 canary requests per tick; min_requests 100 needs 10 ticks; inconclusive_limit 6 ends it at tick 7
    results = judged(analysis(inconclusive_limit=6), errors_run([(10, 0, 90, 1)] * 20))
    ticks = results[1:]
    assert [r.tick for r in ticks] == [Verdict.INCONCLUSIVE] * 7
    assert [r.decision.action for r in ticks] == ["continue"] * 6 + ["rollback"]
    assert "7 inconclusive analysis ticks in a row" in ticks[-1].decision.reason
    assert "not enough traffic: 70 new / 630 stable requests, 100 each needed" in ticks[-1].verdicts[0].detail
    assert not any(r.may_end_bake for r in results)


def test_pause_on_inconclusive_pauses_and_keeps_judging() -> None:
    results = judged(
        analysis(inconclusive_limit=2, on_inconclusive="pause"), errors_run([(10, 0, 90, 1)] * 12)
    )
    actions = [r.decision.action for r in results[1:]]
    assert actions[:3] == ["continue", "continue", "pause"]
    assert len(actions) == 12  # a pause is not the end of the rollout: the analysis carries on
    assert actions[-2:] == ["continue", "continue"]  # passing once min_requests is reached


def test_a_restarted_series_counts_since_its_restart_and_others_are_unaffected() -> None:
    def run(canary_b: list[float]) -> list[TickResult]:
        lines = []
        for k, b in enumerate(canary_b):
            lines.append(
                record(
                    "r",
                    5 * k,
                    [
                        series("canary", 50 * k, 0, "pod-a"),
                        series("canary", b, 0, "pod-b"),
                        series("stable", 10_000 + 500 * k, 10 + 5 * k, "pod-s"),
                    ],
                )
            )
        return judged(analysis(), lines)

    steady = run([0, 50, 100, 150, 200, 250])
    restarted = run([0, 50, 100, 40, 90, 140])  # pod-b restarted between t=10 and t=15: 40 since
    counts = [r.verdicts[0].counts.get("new_requests") for r in restarted[1:]]
    assert counts == [100, 200, 290, 390, 490]  # pod-b: 100 before, 40 since the restart
    assert [r.verdicts[0].counts.get("new_requests") for r in steady[1:]] == [100, 200, 300, 400, 500]
    assert "restarted: canary/pod-b" in restarted[3].verdicts[0].detail
    assert "restarted" not in restarted[4].verdicts[0].detail
    assert [r.decision.action for r in restarted] == ["continue"] * 6


def test_a_series_first_seen_later_counts_in_full() -> None:
    lines = [
        record("r", 0, [series("canary", 0, 0), series("stable", 1000, 10)]),
        record("r", 5, [series("canary", 100, 1), series("stable", 1900, 19)]),
        record(
            "r",
            10,
            [series("canary", 200, 2), series("canary", 70, 0, "new-pod"), series("stable", 2800, 28)],
        ),
    ]
    results = judged(analysis(), lines)
    assert results[2].verdicts[0].counts["new_requests"] == 270
    assert results[2].verdicts[0].counts["stable_requests"] == 1800


def test_the_backtest_runs_the_providers_comparison_with_the_state_carried() -> None:
    increments = [(100, 1, 900, 9), (120, 4, 880, 7), (80, 0, 920, 12), (100, 3, 900, 8)]
    results = judged(analysis(), errors_run(increments))
    tick = AnalyzeInput.model_validate(
        {"service": "s", "version": "v2", "router": ROUTER, "metrics": [ERRORS]}
    )
    c = [0.0, 0.0, 0.0, 0.0]
    for (cr, ce, sr, se), r in zip(increments, results[1:], strict=True):
        c = [c[0] + cr, c[1] + ce, c[2] + sr, c[3] + se]
        v = compare_verdict(
            "errors",
            "errors",
            ["5xx"],
            Totals(c[0], c[2], (c[1],), (c[3],)),
            tick,
            alpha=0.01,
            tolerance=0.1,
            min_requests=100,
        )
        tick = tick.model_copy(update={"previous": [v]})
        got = r.verdicts[0]
        assert got.comparison is not None and v.comparison is not None
        assert got.comparison.log_lr == v.comparison.log_lr
        assert (got.verdict, got.detail) == (v.verdict, v.detail)


def latency_series(version: str, buckets: dict[str, float], instance: str | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"version": version, "requests": buckets["+Inf"], "buckets": buckets}
    if instance:
        s["instance"] = instance
    return s


def test_a_slower_canary_fails_on_its_histogram() -> None:
    def buckets(n: float, fast: float) -> dict[str, float]:
        return {"0.1": n * fast, "0.5": n * (fast + (1 - fast) / 2), "+Inf": n}

    lines = [
        json.dumps(
            {
                "run": "l",
                "t": 5 * k,
                "weight": 10,
                "metrics": {
                    "latency": [
                        latency_series("canary", buckets(100 * k, 0.5)),
                        latency_series("stable", buckets(900 * k, 0.9)),
                    ]
                },
            }
        )
        for k in range(12)
    ]
    results = judged(analysis(LATENCY), lines)
    assert results[-1].decision.action == "rollback"
    assert "slower than 0.1s" in results[-1].verdicts[0].detail


def test_runs_are_judged_independently() -> None:
    lines = errors_run([(100, 8, 900, 9)] * 10, run="bad") + errors_run([(100, 1, 900, 9)] * 10, run="good")
    results = judged(analysis(), lines)
    by_run = {r.run: r for r in results}
    assert by_run["bad"].decision.action == "rollback"
    assert by_run["good"].decision.action == "continue" and by_run["good"].may_end_bake


@pytest.mark.parametrize(
    ("line", "where", "words"),
    [
        ("not json", "", "not JSON"),
        ('{"run": "a", "t": 5, "metrics": {}}', "weight", "missing"),
        ('{"run": "a", "t": -1, "weight": 10, "metrics": {}}', "t", "not at least 0"),
        ('{"run": "a", "t": 5, "weight": 120, "metrics": {}}', "weight", "between 0 and 100"),
        ('{"run": "a", "t": 5, "weight": 10, "metrics": {"oops": []}}', "metrics.oops", "not a `compare"),
        (
            '{"run": "a", "t": 5, "weight": 10, "metrics": {"errors": [{"version": "blue", "requests": 1}]}}',
            "metrics.errors[0].version",
            "expected",
        ),
        (
            '{"run": "a", "t": 5, "weight": 10, "metrics": {"errors": '
            '[{"version": "canary", "requests": 1}]}}',
            "metrics.errors[0].errors",
            "missing",
        ),
        (
            '{"run": "a", "t": 5, "weight": 10, "metrics": {"errors": [{"version": "canary", '
            '"requests": "7", "errors": 0}]}}',
            "metrics.errors[0].requests",
            "expected a number",
        ),
    ],
)
def test_invalid_records_name_their_line_and_field(line: str, where: str, words: str) -> None:
    good = record("a", 0, [series("canary", 0, 0)])
    with pytest.raises(InvalidData) as err:
        judged(analysis(), [good, line])
    assert err.value.line == 2 and err.value.where == where and words in err.value.message


def test_invalid_histograms_and_runs_are_refused() -> None:
    def latency(buckets: dict[str, Any], t: float = 5, run: str = "a") -> str:
        return json.dumps(
            {
                "run": run,
                "t": t,
                "weight": 10,
                "metrics": {"latency": [{"version": "canary", "buckets": buckets}]},
            }
        )

    a = analysis(LATENCY)
    for bad, words in [
        ({"0.1": 5}, '"+Inf" bucket is required'),
        ({"0.1": 9, "+Inf": 5}, "not cumulative in le"),
        ({"fast": 1, "+Inf": 5}, "must parse as a number"),
    ]:
        with pytest.raises(InvalidData, match="line 1") as err:
            judged(a, [latency(bad)])
        assert words in str(err.value)
    with pytest.raises(InvalidData, match="differ from this metric's first series"):
        judged(a, [latency({"0.1": 1, "+Inf": 5}), latency({"0.2": 1, "+Inf": 5}, t=10)])
    with pytest.raises(InvalidData, match="must be contiguous"):
        judged(a, [latency({"+Inf": 5}), latency({"+Inf": 5}, run="b"), latency({"+Inf": 6}, run="a")])
    with pytest.raises(InvalidData, match="before the previous record"):
        judged(a, [latency({"+Inf": 5}, t=10), latency({"+Inf": 6}, t=5)])


def test_cli_json_lines_echo_t_and_invalid_input_exits_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec()))
    data = tmp_path / "data.jsonl"
    lines = errors_run([(100, 1, 900, 9)] * 3)
    lines[2] = lines[2].replace('"t": 10', '"t": 10.25')
    data.write_text("\n".join(lines) + "\n")
    code, _ = run_cli(["backtest", "-f", str(spec_file), "--data", str(data), "--output", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert [r["t"] for r in rows] == [0, 5, 10.25, 15]
    assert {k for r in rows for k in r} >= {"run", "t", "tick", "decision", "may_end_bake", "metrics"}
    assert rows[-1]["metrics"]["errors"]["verdict"] == "pass" and rows[-1]["may_end_bake"] is True
    assert math.isfinite(rows[-1]["metrics"]["errors"]["e_value"])

    code, _ = run_cli(["backtest", "-f", str(spec_file), "--data", str(data)])
    out = capsys.readouterr()
    assert code == 0 and "run a" in out.out and "not rolled back by t=15" in out.out

    data.write_text(lines[0] + "\n" + '{"run": "a", "t": 5}\n')
    code, _ = run_cli(["backtest", "-f", str(spec_file), "--data", str(data), "-o", "json"])
    out = capsys.readouterr()
    assert code == 2
    assert "line 2: weight: missing" in out.err


def test_the_example_recording_is_judged_as_documented() -> None:
    from pathlib import Path

    from sluice.contracts.spec import load_spec

    root = Path(__file__).resolve().parents[2]
    spec = load_spec((root / "examples" / "compare.yaml").read_text())
    assert spec.analysis is not None
    with (root / "examples" / "backtest.jsonl").open() as f:
        results = list(backtest(spec.analysis, f))
    healthy = [r for r in results if r.run == "healthy"]
    regression = [r for r in results if r.run == "regression"]
    assert all(r.decision.action == "continue" for r in healthy)
    assert next(r.t for r in healthy if r.may_end_bake) == 25
    assert any("restarted: canary/c1" in v.detail for r in healthy for v in r.verdicts)
    assert (regression[-1].t, regression[-1].decision.action) == (160, "rollback")
    assert next(r.t for r in regression if r.may_end_bake) == 20


def test_the_post_promotion_watch_catches_a_failing_version_without_stable_traffic() -> None:
    before = [(100, 1, 900, 9)] * 12  # 10%: stable's rate is recorded (1%)
    healthy = errors_run([*before, *[(1000, 10, 0, 0)] * 24])  # then 100% on the new version, 1%
    failing = errors_run([*before, *[(1000, 920, 0, 0)] * 24])  # 92% of requests fail
    ok = judged(analysis(), healthy)
    assert all(r.decision.action == "continue" for r in ok) and ok[-1].may_end_bake
    assert "compared with its rate recorded before (1%, 108/10800)" in ok[-1].verdicts[0].detail
    bad = judged(analysis(), failing)
    assert (bad[-1].t, bad[-1].decision.action) == (65, "rollback")  # the watch's first tick


def test_clustering_estimate_reaches_the_judgement_and_stays_out_of_the_digest() -> None:
    plain = parse_spec(spec())
    estimated = parse_spec(spec({**ERRORS, "clustering": "estimate"}))
    assert plain.digest() == parse_spec(spec({**ERRORS, "clustering": "independent"})).digest()
    assert estimated.digest() != plain.digest()
    assert "clustering" not in json.dumps(plain.model_dump(mode="json"))
    assert estimated.analysis is not None
    # retried failures: every failing request shows up 4 times
    lines = errors_run([(100, 4 * (k % 3), 900, 4 * (k % 5 + 7)) for k in range(30)])
    results = judged(estimated.analysis, lines)
    comparison = results[-1].verdicts[0].comparison
    assert comparison is not None and comparison.dispersion[0] > 1.05  # an upper bound, above 1
    assert (
        "an upper bound on how clustered stable's 5xx are (from 30 intervals)"
        in results[-1].verdicts[0].detail
    )
    assert judged(analysis(), lines)[-1].verdicts[0].comparison.dispersion == [1.0]  # type: ignore[union-attr]
