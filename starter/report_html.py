"""`sluice report --format html`: one self-contained file (no network, no script needed to view).

Plots are drawn by matplotlib as inline SVG: text is turned into paths, so the file needs no
fonts, scripts or stylesheets from anywhere. The report's JSON (what `--output json` prints) is
embedded in a `<script type="application/json" id="sluice-report">` element, and each figure
shown carries `data-figure` with the same number, so a check can compare the two.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sluice.cli.report import (
    SUMMARY_HEADER,
    percent,
    seconds,
    story_title,
    summary_row,
    title,
    unknown_note,
    when,
)
from sluice.contracts.status import Verdict
from sluice.runtime.insights import InsightsReport, RolloutStory, bound_value

matplotlib.rcParams.update(
    {
        "svg.fonttype": "path",  # glyphs as paths: no font needed where the file is opened
        "svg.hashsalt": "sluice",  # stable element ids: the same report gives the same file
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLORS = {
    "promoted": "#2e7d32",
    "rolled_back": "#c62828",
    "aborted": "#ef6c00",
    "failed": "#6a1b9a",
    "running": "#1565c0",
    "unknown": "#9e9e9e",
}
PHASE_COLORS = {"paused": "#fff3c4", "awaiting_approval": "#d6e6ff", "rolling_back": "#ffd6d6"}
VERDICT_COLORS = {Verdict.PASS: "#2e7d32", Verdict.FAIL: "#c62828", Verdict.INCONCLUSIVE: "#9e9e9e"}

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px;
       color: #1d1d1f; padding: 0 16px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border-bottom: 1px solid #e3e3e3; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; } .card { border: 1px solid #e3e3e3; border-radius: 8px;
       padding: 10px 14px; min-width: 150px; } .card b { display: block; font-size: 22px; }
.card span { color: #666; font-size: 12px; } figure { margin: 12px 0; }
figcaption { color: #555; font-size: 12px; }
.note { color: #555; } code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
"""


def render_html(data: InsightsReport | RolloutStory) -> str:
    """The report or the story as one HTML document."""
    if isinstance(data, InsightsReport):
        return _page(title(data), _report_body(data), data.model_dump_json())
    return _page(story_title(data), _story_body(data), data.model_dump_json())


def _page(heading: str, body: list[str], data_json: str) -> str:
    embedded = data_json.replace("</", "<\\/")  # cannot close the script element early
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(heading)}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>{html.escape(heading)}</h1>",
            *body,
            f'<script type="application/json" id="sluice-report">{embedded}</script>',
            "</body></html>",
        ]
    )


def svg(fig: Figure) -> str:
    """The figure as an inline `<svg>` element (no XML prolog, no external references)."""
    out = io.StringIO()
    # No RDF metadata block: it only adds URLs (dublincore, creativecommons) to the file.
    metadata = {"Date": None, "Creator": None, "Format": None, "Type": None}
    fig.savefig(out, format="svg", bbox_inches="tight", metadata=metadata)
    text = out.getvalue()
    return text[text.index("<svg") :]


def _figure(name: str, fig: Figure, caption: str) -> str:
    return f'<figure data-plot="{name}">{svg(fig)}<figcaption>{html.escape(caption)}</figcaption></figure>'


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], row_attrs: Sequence[str] | None = None
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        attrs = f" {row_attrs[i]}" if row_attrs else ""
        body.append(f"<tr{attrs}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _card(figure: str, value: str, label: str) -> str:
    return (
        f'<div class="card" data-figure="{figure}"><b>{html.escape(value)}</b>'
        f"<span>{html.escape(label)}</span></div>"
    )


# --- the report over many rollouts ------------------------------------------------------------


def _report_body(report: InsightsReport) -> list[str]:
    o = report.overall
    body = [
        '<div class="cards">',
        _card("rollouts", str(o.rollouts), "rollouts started"),
        _card("promoted", str(o.promoted), "promoted"),
        _card("change_failure_rate", percent(o.change_failure_rate), "change failure rate"),
        _card("deployments_per_week", f"{o.deployments_per_week:.2f}", "deployments per week"),
        _card("time_to_restore.median_s", seconds(o.time_to_restore.median_s), "time to restore, median"),
        _card("time_to_restore.p90_s", seconds(o.time_to_restore.p90_s), "time to restore, p90"),
        _card(
            "time_to_promotion.median_s", seconds(o.time_to_promotion.median_s), "start to promotion, median"
        ),
        _card("paused_total_s", seconds(o.paused_total_s), "paused, in all"),
        _card("awaiting_approval_total_s", seconds(o.awaiting_approval_total_s), "awaiting approval, in all"),
        "</div>",
        "<h2>Per service</h2>",
        _table(
            SUMMARY_HEADER,
            [summary_row("all", o)] + [summary_row(s.service, s) for s in report.services],
            ['data-service=""'] + [f'data-service="{html.escape(s.service)}"' for s in report.services],
        ),
    ]
    body += [f'<p class="note">{html.escape(line)}</p>' for line in unknown_note(report) if line]
    if report.rollouts:
        body += ["<h2>Plots</h2>", _weekly_plot(report), _outcomes_plot(report)]
        if any(f.restore_seconds is not None for f in report.rollouts):
            body.append(_restore_plot(report))
        if o.rollback_causes:
            body.append(_causes_plot(report))
    for heading, counts in (
        ("Why rollouts did not promote (cause)", o.rollback_causes),
        ("Who stopped them", o.rollback_by),
        ("Metrics that rolled back", o.rollback_metrics),
        ("Reasons", o.rollback_reasons),
    ):
        if counts:
            body += [
                f"<h2>{html.escape(heading)}</h2>",
                _table(("count", "what"), [(str(n), k) for k, n in counts.items()]),
            ]
    if report.suspicious:
        body += [
            "<h2>Possible false rollbacks</h2>",
            '<p class="note">Rolled back by the engine, later promoted with the same version and '
            "spec digest.</p>",
            _table(
                ("service", "version", "spec", "rolled back", "because", "promoted"),
                [
                    (
                        s.service,
                        s.version,
                        s.spec_digest,
                        when(s.rolled_back_at),
                        ", ".join(s.metrics) or (s.cause or "?"),
                        when(s.promoted_at),
                    )
                    for s in report.suspicious
                ],
                ['data-suspicious="1"'] * len(report.suspicious),
            ),
        ]
    body += [
        "<h2>Rollouts</h2>",
        _table(
            (
                "started",
                "service",
                "version",
                "outcome",
                "cause",
                "time to restore",
                "start→promotion",
                "paused",
            ),
            [
                (
                    when(f.started_at),
                    f.service,
                    f.version,
                    f.outcome,
                    f.cause or "",
                    seconds(f.restore_seconds),
                    seconds(f.promotion_seconds),
                    seconds(f.paused_seconds) if f.paused_seconds else "",
                )
                for f in report.rollouts
            ],
            [f'data-outcome="{f.outcome}"' for f in report.rollouts],
        ),
        '<p class="note">What each figure means: docs/insights.md in the Sluice repository.</p>',
    ]
    return body


def _weekly_plot(report: InsightsReport) -> str:
    fig = Figure(figsize=(7.5, 2.6))
    ax = fig.add_subplot()
    labels = [w.week[5:] for w in report.weeks]
    promoted = [w.promoted for w in report.weeks]
    failures = [w.change_failures for w in report.weeks]
    other = [w.started - w.promoted - w.change_failures for w in report.weeks]
    x = range(len(labels))
    ax.bar(x, promoted, color=COLORS["promoted"], label="promoted")
    ax.bar(x, failures, bottom=promoted, color=COLORS["rolled_back"], label="rolled back / aborted / failed")
    bottom = [p + f for p, f in zip(promoted, failures, strict=True)]
    ax.bar(x, other, bottom=bottom, color=COLORS["unknown"], label="running / unknown")
    ax.set_xticks(list(x), labels, rotation=0 if len(labels) < 10 else 60)
    ax.set_ylabel("rollouts")
    ax.set_xlabel("week starting (UTC)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return _figure("weekly", fig, "Rollouts started per week, by outcome.")


def _outcomes_plot(report: InsightsReport) -> str:
    services = report.services
    fig = Figure(figsize=(7.5, 0.6 + 0.35 * max(len(services), 1)))
    ax = fig.add_subplot()
    names = [s.service for s in services]
    left = [0] * len(services)
    for outcome in ("promoted", "rolled_back", "aborted", "failed", "running", "unknown"):
        counts = [getattr(s, outcome) for s in services]
        if any(counts):
            ax.barh(names, counts, left=left, color=COLORS[outcome], label=outcome.replace("_", " "))
            left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("rollouts")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False, fontsize=8, ncol=6, loc="lower left", bbox_to_anchor=(0, 1))
    return _figure(
        "outcomes", fig, "Outcomes per service (change failure rate = red, orange and purple among finished)."
    )


def _restore_plot(report: InsightsReport) -> str:
    fig = Figure(figsize=(7.5, 2.6))
    ax = fig.add_subplot()
    restored = [(f, f.restore_seconds) for f in report.rollouts if f.restore_seconds is not None]
    ax.scatter(
        [_date_number(f.started_at) for f, _ in restored],
        [value for _, value in restored],
        c=[COLORS[f.outcome] for f, _ in restored],
        s=24,
        zorder=3,
    )
    ttr = report.overall.time_to_restore
    if ttr.median_s is not None:
        ax.axhline(ttr.median_s, color="#555", lw=1, ls="--", label=f"median {seconds(ttr.median_s)}")
    if ttr.p90_s is not None:
        ax.axhline(ttr.p90_s, color="#555", lw=1, ls=":", label=f"p90 {seconds(ttr.p90_s)}")
    ax.set_ylabel("seconds")
    ax.set_ylim(bottom=0)
    ax.xaxis_date()
    ax.legend(frameon=False, fontsize=8)
    fig.autofmt_xdate()
    return _figure(
        "time_to_restore",
        fig,
        "Time to restore per rollout: first failing verdict (or the rollback decision) to 100% "
        "stable, verified.",
    )


def _date_number(at: datetime) -> float:
    """Matplotlib's date number (days since its default epoch, 1970-01-01 UTC)."""
    return (at - EPOCH).total_seconds() / 86400


def _causes_plot(report: InsightsReport) -> str:
    causes = report.overall.rollback_causes
    fig = Figure(figsize=(7.5, 0.6 + 0.3 * len(causes)))
    ax = fig.add_subplot()
    ax.barh(list(causes), list(causes.values()), color=COLORS["rolled_back"])
    ax.invert_yaxis()
    ax.set_xlabel("rollouts not promoted")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _figure("causes", fig, "What ended the rollouts that were not promoted.")


# --- one rollout explained --------------------------------------------------------------------


def _story_body(story: RolloutStory) -> list[str]:
    f = story.facts
    body = [
        f'<p data-figure="decision"><b>Decision:</b> {html.escape(story.decision)}</p>',
        '<div class="cards">',
        _card("outcome", f.outcome, "outcome"),
        _card("ticks", str(len(story.timeline.ticks)), "analysis ticks"),
        _card("restore_seconds", seconds(f.restore_seconds), "time to restore"),
        _card("promotion_seconds", seconds(f.promotion_seconds), "start to promotion"),
        _card("paused_seconds", seconds(f.paused_seconds), "paused"),
        _card("approval_seconds", seconds(f.approval_seconds), "awaiting approval"),
        "</div>",
        _story_plot(story),
        "<h2>What happened</h2>",
    ]
    start = story.status.started_at
    body.append(
        _table(
            ("at", "what", "detail"),
            [(f"{(e.at - start).total_seconds():+.2f}s", e.kind, e.text) for e in story.events],
            [f'data-kind="{e.kind}"' for e in story.events],
        )
    )
    return body


def _offset(at: datetime, start: datetime) -> float:
    return (at - start).total_seconds()


def _story_plot(story: RolloutStory) -> str:
    timeline = story.timeline
    start = story.status.started_at
    metrics: list[str] = []
    for tick in timeline.ticks:
        metrics += [v.metric for v in tick.verdicts if v.metric not in metrics]
    rows = 2 + len(metrics)
    fig = Figure(figsize=(8.5, 1.2 + 1.5 * rows))
    axes = fig.subplots(rows, 1, sharex=True, gridspec_kw={"height_ratios": [2] + [1.5] * len(metrics) + [1]})
    weights_ax, lane = axes[0], axes[-1]
    end = _offset(story.status.finished_at or max((e.at for e in story.events), default=start), start)
    for ax in axes:
        for span in timeline.phases:
            color = PHASE_COLORS.get(span.phase)
            if color:
                ax.axvspan(_offset(span.start, start), _offset(span.end, start), color=color, lw=0)
    # Weights: a step line, held until the end.
    if timeline.weights:
        xs = [_offset(w.at, start) for w in timeline.weights] + [end]
        ys = [w.canary for w in timeline.weights] + [timeline.weights[-1].canary]
        weights_ax.step(xs, ys, where="post", color="#1565c0", lw=2)
        weights_ax.scatter(xs[:-1], ys[:-1], color="#1565c0", s=14, zorder=3)
    weights_ax.set_ylim(-5, 105)
    weights_ax.set_ylabel("new version %")
    weights_ax.set_title("traffic on the new version (read back)", loc="left", fontsize=9)
    for ax, metric in zip(axes[1:-1], metrics, strict=True):
        _metric_axis(ax, metric, story, start)
    # The lane: operator actions and the decision.
    lane.set_ylim(0, 1)
    lane.set_yticks([])
    lane.set_title("operator actions and gates", loc="left", fontsize=9)
    for action in story.status.actions:
        x = _offset(action.at, start)
        lane.axvline(x, color="#333", lw=1)
        lane.text(x, 0.55, f" {action.action} ({action.by})", fontsize=8, va="center")
    if story.status.finished_at is not None:
        lane.axvline(end, color=COLORS.get(story.status.phase.value, "#333"), lw=2)
        lane.text(end, 0.15, f" {story.status.phase.value}", fontsize=8, color="#333")
    lane.set_xlabel("seconds since the rollout started")
    lane.set_xlim(left=0, right=max(end * 1.08, 1.0))
    return _figure(
        "story",
        fig,
        "Weights, each metric against its bound (green pass, red fail, grey inconclusive) and operator "
        "actions on one time axis; yellow: paused, blue: awaiting approval, red: rolling back.",
    )


def _metric_axis(ax: Axes, metric: str, story: RolloutStory, start: datetime) -> None:
    points = [(tick.at, v) for tick in story.timeline.ticks for v in tick.verdicts if v.metric == metric]
    xs = [_offset(at, start) for at, v in points if v.value is not None]
    ys = [v.value for _, v in points if v.value is not None]
    if xs:
        ax.plot(xs, ys, color="#888", lw=1)
    for at, v in points:
        y = v.value if v.value is not None else 0.0
        marker = "o" if v.value is not None else "x"
        ax.scatter([_offset(at, start)], [y], color=VERDICT_COLORS[v.verdict], s=18, marker=marker, zorder=3)
    bounds = {bound_value(v.bound) for _, v in points if v.bound}
    for bound in sorted(b for b in bounds if b is not None):
        ax.axhline(bound[1], color="#c62828", lw=1, ls="--", label=f"bound {bound[0]} {bound[1]:g}")
    if any(b is not None for b in bounds):
        ax.legend(frameon=False, fontsize=8, loc="upper left")
    ax.set_title(f"{metric}", loc="left", fontsize=9)
    ax.set_ylabel("value")
