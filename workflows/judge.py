"""Pure judgement of one analysis tick: fold verdicts into counters and decide what happens next.

Rules (documented in the README's spec reference):
- a tick fails if any metric fails; it is inconclusive if none fails and any is inconclusive;
- more failing ticks in total than `failure_limit` rolls back;
- more inconclusive ticks in a row than `inconclusive_limit` applies `on_inconclusive`
  (`rollback`, or `pause` for a human to decide); a passing or failing tick ends the run;
- a bake under analysis ends (and the rollout moves on) only after a passing tick
  (`may_end_bake`), so a canary too quiet to judge never moves on silently.

`sluice backtest` runs these same functions on recorded counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sluice.contracts.spec import AnalysisSpec
from sluice.contracts.status import AnalysisCounters, MetricVerdict, Verdict


@dataclass(frozen=True)
class Decision:
    """What the rollout does after a tick: carry on, roll back, or pause for a human."""

    action: Literal["continue", "rollback", "pause"]
    reason: str = ""


CONTINUE = Decision("continue")


def tick_verdict(verdicts: list[MetricVerdict]) -> Verdict:
    """FAIL if any metric failed, else INCONCLUSIVE if any was, else PASS."""
    kinds = {v.verdict for v in verdicts}
    if Verdict.FAIL in kinds:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in kinds or not verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


def may_end_bake(verdicts: list[MetricVerdict]) -> bool:
    """Whether a timed bake ending after this tick moves on: only if the tick passed."""
    return tick_verdict(verdicts) is Verdict.PASS


def judge(
    spec: AnalysisSpec, counters: AnalysisCounters, verdicts: list[MetricVerdict]
) -> tuple[AnalysisCounters, Decision]:
    """Fold one tick's verdicts into `counters` (returned as a new object) and decide."""
    outcome = tick_verdict(verdicts)
    ticks = counters.ticks + 1
    if outcome is Verdict.FAIL:
        failed = counters.failed_ticks + 1
        new = counters.model_copy(
            update={"ticks": ticks, "failed_ticks": failed, "consecutive_inconclusive": 0}
        )
        if failed > spec.failure_limit:
            culprits = "; ".join(f"{v.metric}: {v.detail}" for v in verdicts if v.verdict is Verdict.FAIL)
            return new, Decision("rollback", f"analysis failed ({culprits})")
        return new, CONTINUE
    if outcome is Verdict.INCONCLUSIVE:
        run = counters.consecutive_inconclusive + 1
        if run > spec.inconclusive_limit:
            why = "; ".join(f"{v.metric}: {v.detail}" for v in verdicts if v.verdict is Verdict.INCONCLUSIVE)
            reason = f"{run} inconclusive analysis ticks in a row ({why})"
            reset = counters.model_copy(update={"ticks": ticks, "consecutive_inconclusive": 0})
            return reset, Decision(spec.on_inconclusive, reason)
        return counters.model_copy(update={"ticks": ticks, "consecutive_inconclusive": run}), CONTINUE
    return counters.model_copy(update={"ticks": ticks, "consecutive_inconclusive": 0}), CONTINUE
