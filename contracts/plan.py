"""A spec's steps as a timeline (weight after each, shortest elapsed time) and its UI summaries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sluice.contracts.durations import format_duration
from sluice.contracts.spec import RingRolloutSpec, RolloutSpec
from sluice.contracts.status import approve_hint
from sluice.contracts.text import markdown_cell as _cell

StepKind = Literal["set_weight", "bake", "wait", "approval", "watch"]


@dataclass(frozen=True)
class TimelineEntry:
    """One effective step: 0-based `index` as in the status query, canary weight after it."""

    index: int
    step: str
    kind: StepKind
    weight: int
    elapsed: timedelta
    """Shortest time from the start to the end of this step (human waits count as zero)."""
    waits_for_operator: bool
    added: bool
    """True for the final `set_weight: 100` the engine adds when the spec does not end there."""


@dataclass(frozen=True)
class Plan:
    """A rollout as it will run, before it runs."""

    spec: RolloutSpec | RingRolloutSpec
    entries: list[TimelineEntry]

    @property
    def shortest_total(self) -> timedelta:
        return self.entries[-1].elapsed if self.entries else timedelta(0)

    @property
    def operator_waits(self) -> list[int]:
        """0-based indexes of the `pause: {}` steps that wait for resume or promote."""
        return [e.index for e in self.entries if e.waits_for_operator]

    @property
    def analysis_from(self) -> int | None:
        """0-based index of the first step with a weight above 0, where analysis starts."""
        return next((e.index for e in self.entries if e.kind == "set_weight" and e.weight > 0), None)


def build_plan(spec: RolloutSpec | RingRolloutSpec) -> Plan:
    """Walk the effective steps (of one ring, for a ring rollout), accumulating weight and time."""
    entries: list[TimelineEntry] = []
    weight = 0
    elapsed = timedelta(0)
    written = len(spec.written_steps())
    for index, step in enumerate(spec.effective_steps()):
        kind: StepKind
        if step.set_weight is not None:
            kind = "set_weight"
            weight = step.set_weight
        elif step.watch is not None:
            kind = "watch"
            elapsed += step.watch
        elif step.approval is not None:
            kind = "approval"
        elif step.pause is not None and step.pause.duration is not None:
            kind = "bake"
            elapsed += step.pause.duration
        else:
            kind = "wait"
        entries.append(
            TimelineEntry(
                index=index,
                step=step.describe(),
                kind=kind,
                weight=weight,
                elapsed=elapsed,
                waits_for_operator=kind in ("wait", "approval"),
                added=index >= written and kind != "watch",
            )
        )
    return Plan(spec=spec, entries=entries)


def versions(spec: RolloutSpec | RingRolloutSpec) -> str:
    """`v1 → v2`, or `stable → v2` when the spec names no stable version."""
    return f"{spec.stable_version or 'stable'} → {spec.version}"


def where(spec: RolloutSpec | RingRolloutSpec) -> str:
    """Where traffic is split: the router, or every ring's."""
    if isinstance(spec, RingRolloutSpec):
        return f"{len(spec.rings)} rings: " + "; ".join(
            f"{r.name} ({r.router.describe()})" for r in spec.rings
        )
    return spec.router.describe()


def how(spec: RolloutSpec | RingRolloutSpec) -> str:
    """`canary`, `blue_green`, or `canary, preset Linear10PercentEvery1Minute`."""
    text: str = spec.strategy
    if spec.preset is not None:
        name = spec.preset if isinstance(spec.preset, str) else f"exponential x{spec.preset.growth_factor:g}%"
        text += f", preset {name}"
    return text


def static_summary(spec: RolloutSpec | RingRolloutSpec) -> str:
    """One line for the Temporal UI: `checkout: v1 → v2, 6 steps (canary via haproxy be_x)`."""
    count = len(spec.effective_steps())
    return (
        f"{spec.service}: {versions(spec)}, {count} step{'s' if count != 1 else ''} "
        f"({spec.strategy} via {where(spec).replace('`', '')})"
    )


def static_details(plan: Plan, started_by: str) -> str:
    """Markdown for the Temporal UI: the timeline and the metrics as tables."""
    spec = plan.spec
    lines = [
        f"**{spec.service}**: {versions(spec)} ({how(spec)}) via {where(spec)}",
        "",
        "| # | step | canary weight after | shortest elapsed |",
        "|---|---|---|---|",
    ]
    for e in plan.entries:
        note = " (waits for an operator: `resume`)" if e.kind == "wait" else ""
        if e.kind == "approval":
            note = f" (waits for an approval: {approve_hint(spec.service)}; `resume` does not pass it)"
        note += " (added: the spec does not end at 100%)" if e.added else ""
        elapsed = format_duration(e.elapsed)
        lines.append(f"| {e.index + 1} | {_cell(e.step)}{note} | {e.weight}% | {elapsed} |")
    total = format_duration(plan.shortest_total)
    lines += [
        "",
        f"Shortest total: {total}" + (" plus operator waits" if plan.operator_waits else ""),
    ]
    if spec.analysis is not None:
        a = spec.analysis
        lines += [
            "",
            f"Analysis every {format_duration(a.interval)} from the first weight above 0; "
            f"rolls back after {a.failure_limit + 1} failing tick(s), "
            f"{a.on_inconclusive} after {a.inconclusive_limit + 1} inconclusive ticks in a row.",
            "",
            "| metric | provider | passes when |",
            "|---|---|---|",
        ]
        lines += [f"| {m.name} | {m.provider} | {_cell(m.describe())} |" for m in a.metrics]
    else:
        lines += ["", "No analysis: nothing is measured, so nothing rolls back on its own."]
    lines += ["", f"spec digest `{spec.digest()}`, started by `{_cell(started_by)}`"]
    return "\n".join(lines)


def plan_json(plan: Plan) -> dict[str, Any]:
    """`sluice plan --output json`: indexes are 0-based like the status query's `step_index`."""
    spec = plan.spec
    analysis: dict[str, Any] | None = None
    if spec.analysis is not None:
        a = spec.analysis
        analysis = {
            "interval_seconds": a.interval.total_seconds(),
            "from_step_index": plan.analysis_from,
            "failure_limit": a.failure_limit,
            "inconclusive_limit": a.inconclusive_limit,
            "on_inconclusive": a.on_inconclusive,
            "metrics": [
                {"name": m.name, "provider": m.provider, "passes_when": m.describe()} for m in a.metrics
            ],
        }
    rings: list[dict[str, Any]] | None = None
    if isinstance(spec, RingRolloutSpec):
        rings = [
            {
                "name": r.name,
                "router": r.router.describe(),
                "soak_seconds": r.soak.total_seconds() if r.soak else None,
                "approval_after": r.approval.describe() if r.approval else None,
                "own_analysis": r.analysis is not None,
            }
            for r in spec.rings
        ]
    return {
        "service": spec.service,
        "version": spec.version,
        "stable_version": spec.stable_version,
        "strategy": spec.strategy,
        "preset": spec.preset if isinstance(spec.preset, str | None) else spec.preset.model_dump(mode="json"),
        "rings": rings,
        "earlier_rings_on_failure": spec.earlier_rings_on_failure
        if isinstance(spec, RingRolloutSpec)
        else None,
        "scale_down_delay_seconds": spec.scale_down_delay.total_seconds() if spec.scale_down_delay else None,
        "workflow_id": spec.workflow_id,
        "spec_digest": spec.digest(),
        "steps": [
            {
                "index": e.index,
                "step": e.step,
                "kind": e.kind,
                "weight": e.weight,
                "elapsed_seconds": e.elapsed.total_seconds(),
                "elapsed": format_duration(e.elapsed),
                "waits_for_operator": e.waits_for_operator,
                "added": e.added,
            }
            for e in plan.entries
        ],
        "shortest_total_seconds": plan.shortest_total.total_seconds(),
        "shortest_total": format_duration(plan.shortest_total),
        "operator_waits": plan.operator_waits,
        "analysis": analysis,
    }
