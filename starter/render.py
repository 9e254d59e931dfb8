"""Human-readable output of the CLI: plan timeline, a rollout's status, progress lines, lists."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sluice.contracts.durations import format_duration
from sluice.contracts.plan import Plan, how, versions, where
from sluice.contracts.spec import AnySpec, RingRolloutSpec
from sluice.contracts.status import MetricVerdict, RolloutStatus, Weights, approve_hint
from sluice.contracts.text import utc_time as when


def step_label(index: int, count: int) -> str:
    """`3/6`: the status query counts steps from 0, people count from 1."""
    return f"{index + 1}/{count}"


def clock(at: datetime | None) -> str:
    """A time of day in UTC for lines that already sit under a date."""
    if at is None:
        return "-"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%H:%M:%S")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def weights_line(weights: Weights | None, stable: str | None, version: str) -> str:
    if weights is None:
        return "not set yet"
    return f"{stable or 'stable'} {weights.stable}% · {version} {weights.canary}%"


def drift_line(s: RolloutStatus) -> str:
    """`DRIFT     expected ... found ...`: loud while the router is off Sluice's split."""
    d = s.drift
    assert d is not None
    expected = weights_line(d.expected, s.stable_version, s.version)
    found = weights_line(d.found, s.stable_version, s.version)
    done = f", re-applied {d.reapplied}x" if d.reapplied else ""
    if d.resolved_at is None:
        return (
            f"DRIFT     TRAFFIC DRIFTED since {when(d.since)}: expected {expected}, found {found} "
            f"(on_drift: {d.action}{done})"
        )
    return (
        f"drift     at {when(d.since)} found {found} instead of {expected}; "
        f"{d.action}{done}, back at {clock(d.resolved_at)}"
    )


def verdict_line(v: MetricVerdict) -> str:
    """`canary-5xx: pass, 0.002 (≤ 0.01): 1 error in 512 responses`."""
    value = f", {v.value:g}" if v.value is not None else ""
    bound = f" ({v.bound})" if v.bound else ""
    return f"{v.metric}: {v.verdict.value}{value}{bound}: {v.detail}"


# --- validate and plan ----------------------------------------------------------------------


def render_valid(source: str, spec: AnySpec) -> list[str]:
    steps = len(spec.effective_steps())
    metrics = len(spec.analysis.metrics) if spec.analysis else 0
    return [
        f"{source} is valid: {spec.service} {versions(spec)}, {steps} steps, "
        f"{metrics} metric{'s' if metrics != 1 else ''}"
        + (f", {len(spec.rings)} rings" if isinstance(spec, RingRolloutSpec) else "")
        + f" (workflow {spec.workflow_id}, "
        f"spec digest {spec.digest()})"
    ]


def render_plan(plan: Plan) -> list[str]:
    spec = plan.spec
    lines = [
        f"Plan for {spec.service}: {versions(spec)} ({how(spec)}) via {where(spec).replace('`', '')}",
        "",
    ]
    if isinstance(spec, RingRolloutSpec):
        lines += _ring_lines(spec)
    rows = []
    for e in plan.entries:
        note = "waits for `resume` (or `promote --full`)" if e.kind == "wait" else ""
        if e.kind == "approval":
            note = f"waits for {approve_hint(spec.service)}; `resume` does not pass it"
        if e.kind == "watch":
            note = "analysis continues at 100%; a failure rolls back to stable"
        if e.added:
            note = "added: the spec does not end at 100%"
        rows.append([str(e.index + 1), e.step, f"{e.weight}%", format_duration(e.elapsed), note])
    lines += table(["#", "step", "canary after", "elapsed (shortest)", ""], rows, indent="  ")
    lines.append("")
    total = f"Shortest total: {format_duration(plan.shortest_total)}"
    waits = [e.index + 1 for e in plan.entries if e.kind == "wait"]
    gates = [e.index + 1 for e in plan.entries if e.kind == "approval"]
    if waits:
        total += (
            f", plus however long an operator takes at step {', '.join(map(str, waits))} "
            f"(`sluice resume {spec.service}`, or `sluice promote {spec.service} --full` to skip to 100%)"
        )
    if gates:
        total += (
            f", plus however long approvers take at step {', '.join(map(str, gates))} "
            f"({approve_hint(spec.service)}; `resume` does not pass a gate, and `promote` skips it "
            "only for one of its approvers)"
        )
    lines.append(total + ".")
    if spec.analysis is None:
        lines.append("No analysis: nothing is measured, so nothing rolls back on its own.")
        return lines
    a = spec.analysis
    start = plan.analysis_from
    lines.append(
        f"Analysis every {format_duration(a.interval)} from step "
        f"{'-' if start is None else start + 1} (first weight above 0) to the end: rolls back "
        f"at failing tick {a.failure_limit + 1}; after {a.inconclusive_limit + 1} inconclusive "
        f"ticks in a row it does `{a.on_inconclusive}`."
    )
    lines += table(
        ["metric", "provider", "passes when"],
        [[m.name, m.provider, m.describe()] for m in a.metrics],
        indent="  ",
    )
    return lines


def _ring_lines(spec: RingRolloutSpec) -> list[str]:
    rows = []
    for i, r in enumerate(spec.rings):
        after = []
        if r.soak:
            after.append(f"soak {format_duration(r.soak)} (watched)")
        if r.approval:
            after.append(r.approval.describe())
        rows.append([str(i + 1), r.name, r.router.describe().replace("`", ""), ", ".join(after) or "-"])
    failing = (
        "earlier rings are rolled back in reverse order"
        if spec.earlier_rings_on_failure == "rollback"
        else "earlier rings stay on the new version"
    )
    return [
        *table(["ring", "name", "router", "then, before the next ring"], rows, indent="  "),
        "",
        f"Each ring runs the steps below as its own rollout. If a ring fails it rolls back, and {failing}.",
        "",
    ]


# --- status ---------------------------------------------------------------------------------


def age(at: datetime | None, now: datetime) -> str:
    """`12s ago` (whole seconds, or a duration such as `3m12s`); `-` if there is no moment."""
    if at is None:
        return "-"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    seconds = max(int((now - at).total_seconds()), 0)
    return f"{format_duration(timedelta(seconds=seconds)) if seconds else '0s'} ago"


def render_status(
    status: RolloutStatus, ui_link: str | None = None, note: str | None = None, now: datetime | None = None
) -> list[str]:
    """`note` is what Temporal knows and the status cannot say (e.g. it was terminated).

    While the rollout runs, the weights and the latest verdicts say how old they are (from
    `now`, the local clock by default): a verdict much older than the analysis interval is a
    lost or hung measurement.
    """
    s = status
    now = now or datetime.now(UTC)
    running = not s.phase.is_final
    read = f" (read {age(s.weights_at, now)})" if running and s.weights_at is not None else ""
    lines = [
        f"{s.service} {s.stable_version or 'stable'} → {s.version}: {s.phase.value.upper()}",
        f"  NOTE: {note}" if note else "",
        f"  {s.message}" if s.message else "",
        f"  step      {step_label(s.step_index, s.step_count)}: {s.step}",
        f"  weights   {weights_line(s.weights, s.stable_version, s.version)}{read}",
        f"  started   {when(s.started_at)}",
    ]
    if s.drift is not None:
        lines.append(f"  {drift_line(s)}")
    if s.finished_at is not None:
        took = format_duration(s.finished_at - s.started_at)
        lines.append(f"  finished  {when(s.finished_at)} (after {took})")
    a = s.analysis
    if a.ticks:
        lines.append(
            f"  analysis  {a.ticks} ticks, {a.failed_ticks} failing, "
            f"{a.consecutive_inconclusive} inconclusive in a row"
        )
    lines = [line for line in lines if line]
    if s.verdicts:
        recorded = ""
        if s.verdicts_at is not None:
            how_old = f", {age(s.verdicts_at, now)}" if running else ""
            recorded = f" (recorded {clock(s.verdicts_at)} UTC{how_old})"
        lines += ["", f"  last verdicts{recorded}:"]
        rows = [
            [
                v.metric,
                v.verdict.value,
                "-" if v.value is None else f"{v.value:g}",
                v.bound or "-",
                clock(v.at),
                v.detail,
            ]
            for v in s.verdicts
        ]
        lines += table(["metric", "verdict", "value", "bound", "at", "detail"], rows, indent="    ")
    if s.actions:
        lines += ["", "  operator actions:"]
        rows = [
            [when(x.at), x.action, x.who() or "-", f"step {x.step_index + 1}", x.reason or "-"]
            for x in s.actions
        ]
        lines += table(["at", "action", "by", "during", "reason"], rows, indent="    ")
    if s.approval is not None:
        g = s.approval
        who = ", ".join(g.approvers) if g.approvers else "anyone"
        deadline = f"; at {when(g.deadline)} it does `{g.on_timeout}`" if g.deadline else ""
        lines += [
            "",
            f"  approval  waiting since {when(g.since)} for {who}{deadline}",
            f"            ({g.step})",
        ]
    if s.keep_stable_until is not None:
        lines.append(f"  keep {s.stable_version or 'stable'} deployed until {when(s.keep_stable_until)}")
    if s.rings:
        lines += ["", "  rings:"]
        rows = [
            [
                r.name,
                r.phase if isinstance(r.phase, str) else r.phase.value,
                weights_line(r.weights, s.stable_version, s.version) if r.weights else "-",
                r.workflow_id,
                r.message or "-",
            ]
            for r in s.rings
        ]
        lines += table(["ring", "phase", "weights", "workflow", "message"], rows, indent="    ")
    if s.rollback is not None:
        r = s.rollback
        lines += ["", f"  rollback  started {when(r.started_at)}: {r.reason}"]
        if r.verified_at is not None:
            lines.append(f"            100% on stable verified {when(r.verified_at)}")
        else:
            stuck = f"; last error: {r.last_error}" if r.last_error else ""
            lines.append(f"            NOT VERIFIED YET after {r.attempts} attempt(s){stuck}")
    if not s.traffic_touched and not s.rings:
        lines += ["", "  traffic was never changed by this rollout"]
    if ui_link:
        lines += ["", f"  web UI    {ui_link}"]
    return lines


class Progress:
    """Turns successive status snapshots into lines that say only what changed."""

    def __init__(self) -> None:
        self._last: RolloutStatus | None = None

    def update(self, s: RolloutStatus) -> list[str]:
        prev = self._last
        self._last = s
        out = [
            f"{x.action} by {x.who() or '-'}: {x.reason or '-'}"
            for x in s.actions[len(prev.actions) if prev else 0 :]
        ]
        before = {v.metric: v for v in prev.verdicts} if prev else {}
        for v in s.verdicts:
            old = before.get(v.metric)
            # A verdict line per change of verdict, not per tick: numbers move every tick.
            if old is None or old.verdict != v.verdict:
                out.append(verdict_line(v))
        if s.rollback is not None:
            r, p = s.rollback, prev.rollback if prev else None
            if p is None:
                out.append(f"rolling back: {r.reason}")
            if r.last_error and (p is None or p.last_error != r.last_error):
                out.append(f"rollback not done yet (attempt {r.attempts}): {r.last_error}")
            if r.verified_at is not None and (p is None or p.verified_at is None):
                out.append("rollback verified: 100% on stable")
        if prev is None or prev.phase != s.phase:
            out.append(f"phase {s.phase.value}" + (f": {s.message}" if s.message else ""))
        # After a rollback the step pointer no longer means anything: don't announce it.
        moved = prev is None or (prev.step_index, prev.step) != (s.step_index, s.step)
        if moved and s.rollback is None:
            out.append(f"step {step_label(s.step_index, s.step_count)}: {s.step}")
        if s.weights is not None and (prev is None or prev.weights != s.weights):
            out.append("weights " + weights_line(s.weights, s.stable_version, s.version))
        d, was = s.drift, prev.drift if prev else None
        if d is not None and (was is None or was.since != d.since or was.resolved_at != d.resolved_at):
            out.append(drift_line(s).split(maxsplit=1)[1])
        out += self._ring_changes(prev, s)
        return out

    @staticmethod
    def _ring_changes(prev: RolloutStatus | None, s: RolloutStatus) -> list[str]:
        """A line per ring whose phase or weights changed (a ring rollout's transitions)."""
        out: list[str] = []
        before = {r.name: r for r in prev.rings} if prev else {}
        for ring in s.rings:
            old = before.get(ring.name)
            phase = ring.phase if isinstance(ring.phase, str) else ring.phase.value
            if old is None and phase == "pending":
                continue  # not started: the first snapshot lists no pending rings
            if old is None or old.phase != ring.phase:
                out.append(f"ring {ring.name}: {phase}" + (f": {ring.message}" if ring.message else ""))
            if ring.weights is not None and (old is None or old.weights != ring.weights):
                out.append(
                    f"ring {ring.name} weights " + weights_line(ring.weights, s.stable_version, s.version)
                )
        return out


# --- list -----------------------------------------------------------------------------------


def render_list(rows: Sequence[dict[str, object]]) -> list[str]:
    if not rows:
        return ["no rollouts found"]
    body = [
        [
            str(r["service"] or "-"),
            str(r["version"] or "-"),
            str(r["phase"] or "-"),
            "-" if r["weight"] is None else f"{r['weight']}%",
            str(r["temporal_status"]),
            str(r["started"]),
        ]
        for r in rows
    ]
    return table(["SERVICE", "VERSION", "PHASE", "WEIGHT", "WORKFLOW", "STARTED"], body)
