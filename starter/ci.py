"""How `sluice start --wait` reports in CI and on a terminal: a live view, step summaries.

On a terminal the current status is redrawn in place under the scrolling progress lines;
anywhere else (a CI log, a pipe) each change is one plain timestamped line. When
`GITHUB_STEP_SUMMARY` names a file, a Markdown summary of the rollout is appended to it.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime, timedelta
from typing import TextIO

from sluice.cli.render import clock, render_status, step_label, weights_line
from sluice.contracts.durations import format_duration
from sluice.contracts.spec import RolloutSpec
from sluice.contracts.status import RolloutStatus
from sluice.contracts.text import markdown_cell as _cell
from sluice.contracts.text import utc_time as when


def live_terminal(stream: TextIO, json_output: bool) -> bool:
    """Redraw in place only for a person at a terminal (not `TERM=dumb`, not JSON output)."""
    return not json_output and stream.isatty() and os.environ.get("TERM", "") != "dumb"


class LiveView:
    """A status block redrawn at the bottom of the terminal, with progress lines scrolling above."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._drawn = 0
        self._block: list[str] = []

    def update(self, lines: list[str], status: RolloutStatus | None, watching: str) -> None:
        if status is not None:
            self._block = [*render_status(status), "", f"  {watching}"]
        width = max(shutil.get_terminal_size((100, 24)).columns - 1, 20)
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}F\x1b[J")  # back to the block's first line, clear below
        stamp = datetime.now().strftime("%H:%M:%S")
        out += [f"{stamp}  {line}\n" for line in lines]
        block = [line[:width] for line in self._block]
        out += [f"\x1b[2m{line}\x1b[0m\n" if line.startswith("  ") else f"{line}\n" for line in block]
        self._drawn = len(block)
        self._stream.write("".join(out))
        self._stream.flush()

    def close(self) -> None:
        """Leave the last block on screen; later output goes below it."""
        self._drawn = 0


def markdown_summary(
    status: RolloutStatus, spec: RolloutSpec | None, ui_link: str, trace_id: str | None = None
) -> str:
    """The rollout as GitHub-flavoured Markdown: outcome, steps, verdicts, actions, rollback, times."""
    s = status
    icon = {"promoted": "✅", "rolled_back": "↩️", "aborted": "⏹️", "failed": "❌"}.get(s.phase.value, "⏳")
    took = format_duration(s.finished_at - s.started_at) if s.finished_at else "still running"
    out = [
        f"### {icon} Sluice: {s.service} {s.stable_version or 'stable'} → {s.version}: **{s.phase.value}**",
        "",
        _cell(s.message),
        "",
        "| | |",
        "|---|---|",
        f"| started | {when(s.started_at)} |",
        f"| finished | {when(s.finished_at)} ({took}) |",
        f"| weights | {weights_line(s.weights, s.stable_version, s.version)} |",
        f"| analysis | {s.analysis.ticks} ticks, {s.analysis.failed_ticks} failing |",
        f"| Web UI | [{ui_link.rsplit('/', 1)[-1]}]({ui_link}) |",
    ]
    if trace_id:
        out.append(f"| trace id | `{trace_id}` |")
    if spec is not None:
        out += ["", "#### Steps", "", "| # | step | |", "|---|---|---|"]
        for i, step in enumerate(spec.effective_steps()):
            if s.rollback is not None and i >= s.step_index:
                state = "rolled back" if i == s.step_index else "not run"
            elif s.phase.value == "promoted" or i < s.step_index:
                state = "done"
            else:
                state = "current" if i == s.step_index else "pending"
            out.append(f"| {step_label(i, s.step_count)} | {_cell(step.describe())} | {state} |")
    if s.verdicts:
        out += ["", "#### Last verdicts", "", "| metric | verdict | value | bound | at (UTC) | detail |"]
        out.append("|---|---|---|---|---|---|")
        for v in s.verdicts:
            value = "-" if v.value is None else f"{v.value:g}"
            out.append(
                f"| {v.metric} | {v.verdict.value} | {value} | {_cell(v.bound or '-')} | {clock(v.at)} "
                f"| {_cell(v.detail)} |"
            )
    if s.actions:
        out += ["", "#### Operator actions", "", "| at | action | by | reason |", "|---|---|---|---|"]
        out += [f"| {when(a.at)} | {a.action} | {_cell(a.by)} | {_cell(a.reason)} |" for a in s.actions]
    if s.rollback is not None:
        r = s.rollback
        verified = (
            f"100% on stable verified at {when(r.verified_at)}, "
            f"{(r.verified_at - r.started_at).total_seconds():.2f}s after it began"
            if r.verified_at
            else f"**not verified** after {r.attempts} attempts: {_cell(r.last_error or '')}"
        )
        out += ["", "#### Rollback", "", f"{_cell(r.reason)}; {verified}."]
    return "\n".join(out) + "\n\n"


def append_step_summary(text: str) -> str | None:
    """Append to `$GITHUB_STEP_SUMMARY` if set; returns the path written, None when unset."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return None
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
    return path


def watching_line(started: float, now: float) -> str:
    elapsed = format_duration_seconds(now - started)
    return f"watching for {elapsed}; Ctrl-C stops watching (the rollout goes on)"


def format_duration_seconds(seconds: float) -> str:
    return format_duration(timedelta(seconds=int(seconds))) if seconds >= 1 else "0s"
