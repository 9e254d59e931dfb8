"""Markdown for the Temporal UI's current-details panel, kept up to date by the workflow."""

from __future__ import annotations

from sluice.contracts.status import RolloutStatus, Verdict, approve_hint
from sluice.contracts.text import markdown_cell as _cell

_ICON = {Verdict.PASS: "✅ pass", Verdict.FAIL: "❌ fail", Verdict.INCONCLUSIVE: "⚪ inconclusive"}


def current_details(status: RolloutStatus) -> str:
    """The rollout as it is now: phase, step, weights, last verdicts, last operator action."""
    versions = f"{status.stable_version or 'stable'} → **{status.version}**"
    lines = [
        f"### {status.service}: {versions} · **{status.phase.value}**",
        "",
        _cell(status.message),
        "",
        f"- step {status.step_index + 1}/{status.step_count}: {status.step}",
    ]
    if status.weights is not None:
        read = f" (read {status.weights_at:%H:%M:%S} UTC)" if status.weights_at is not None else ""
        lines.append(f"- weights: stable {status.weights.stable}% · new {status.weights.canary}%{read}")
    if status.drift is not None:
        lines.append(drift_line(status))
    a = status.analysis
    if a.ticks:
        lines.append(
            f"- analysis: {a.ticks} ticks, {a.failed_ticks} failed, "
            f"{a.consecutive_inconclusive} inconclusive in a row"
        )
    if status.approval is not None:
        g = status.approval
        who = ", ".join(g.approvers) if g.approvers else "anyone"
        until = f" until {g.deadline:%Y-%m-%d %H:%M:%S} UTC, then {g.on_timeout}" if g.deadline else ""
        lines.append(f"- **waiting for approval** by {who}{until}: {approve_hint(status.service)}")
    if status.keep_stable_until is not None:
        keep = f"{status.keep_stable_until:%Y-%m-%d %H:%M:%S} UTC"
        lines.append(f"- keep {status.stable_version or 'stable'} deployed until {keep}")
    if status.rings:
        lines += ["", "| ring | phase | weights | workflow |", "|---|---|---|---|"]
        for r in status.rings:
            w = f"{r.weights.stable}% / {r.weights.canary}%" if r.weights else ""
            lines.append(f"| {r.name} | {r.phase} | {w} | {r.workflow_id} |")
    if status.rollback is not None:
        rb = status.rollback
        state = "verified" if rb.verified_at else f"in progress, {rb.attempts} attempts"
        lines.append(f"- rollback: {state}" + (f"; last error: {rb.last_error}" if rb.last_error else ""))
    if status.verdicts:
        if status.verdicts_at is not None:
            lines += ["", f"latest verdicts recorded at {status.verdicts_at:%Y-%m-%d %H:%M:%S} UTC"]
        lines += ["", "| metric | verdict | value | bound | why |", "|---|---|---|---|---|"]
        for v in status.verdicts:
            value = "" if v.value is None else f"{v.value:.4g}"
            lines.append(
                f"| {v.metric} | {_ICON[v.verdict]} | {value} | {_cell(v.bound)} | {_cell(v.detail)} |"
            )
    decisions = [a for a in status.actions if a.decides_a_gate]
    if decisions:
        # Every approval, refusal and gate timeout (the audit trail), newest last; `by` is
        # self-declared unless verified, and says so.
        lines += ["", "| gate decision | by | at (UTC) | step | why |", "|---|---|---|---|---|"]
        for d in decisions[-20:]:
            at = f"{d.at:%Y-%m-%d %H:%M:%S}"
            lines.append(f"| {d.action} | {_cell(d.who())} | {at} | {d.step_index + 1} | {_cell(d.reason)} |")
    if status.actions:
        last = status.actions[-1]
        lines += ["", f"last action: **{last.action}** by {_cell(last.who())}: {_cell(last.reason)}"]
    return "\n".join(lines)


def drift_line(status: RolloutStatus) -> str:
    """The latest drift of the router's split: loud while it lasts, a note once resolved."""
    d = status.drift
    assert d is not None
    expected = f"stable {d.expected.stable}% · new {d.expected.canary}%"
    found = f"stable {d.found.stable}% · new {d.found.canary}%"
    seen = f"since {d.since:%H:%M:%S} UTC, {d.count} tick{'s' if d.count != 1 else ''}"
    done = f"; re-applied {d.reapplied}×" if d.reapplied else ""
    if d.resolved_at is None:
        how = f"on_drift: {d.action}{done}"
        return f"- ⚠️ **TRAFFIC DRIFTED**: expected {expected}, found {found} ({seen}; {how})"
    return (
        f"- traffic had drifted to {found} at {d.since:%H:%M:%S} UTC (expected {expected}); "
        f"{d.action}{done}, back at {d.resolved_at:%H:%M:%S} UTC"
    )
