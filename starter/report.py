"""`sluice report`: delivery figures over a window, or one rollout explained, as text, JSON,
Markdown or a self-contained HTML file (see docs/insights.md for what each figure means)."""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sluice.cli.console import Console
from sluice.cli.exits import CliError, ExitCode
from sluice.cli.render import table
from sluice.runtime.client import SluiceClient, SluiceError
from sluice.runtime.insights import Durations, Figures, InsightsReport, RolloutStory, story_of, summarize
from sluice.runtime.rollout_history import latest_record, list_records, read_run, read_runs

_WINDOW = re.compile(r"^(\d+(?:\.\d+)?)(h|d|w)$")
_UNIT = {"h": 1 / 24, "d": 1.0, "w": 7.0}


def parse_window(text: str) -> timedelta:
    """`30d`, `12h`, `6w` as a timedelta (argparse type: a bad one is exit 2 with usage)."""
    match = _WINDOW.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window; write e.g. 30d, 12h or 6w")
    return timedelta(days=float(match.group(1)) * _UNIT[match.group(2)])


def add_arguments(p: argparse.ArgumentParser, service_type: Callable[[str], str]) -> None:
    """The `report` subcommand's options (the parser adds `--output`)."""
    p.add_argument(
        "--since", type=parse_window, default=timedelta(days=30), help="window: 30d (default), 12h, 6w"
    )
    p.add_argument("--service", type=service_type, default=None, help="only this service's rollouts")
    p.add_argument(
        "--rollout",
        type=service_type,
        default=None,
        metavar="SERVICE",
        help="explain this service's latest rollout",
    )
    p.add_argument("--run-id", default=None, help="with --rollout: explain this run instead of the latest")
    p.add_argument(
        "--format",
        choices=("text", "markdown", "html"),
        default="text",
        help="text (default), markdown (for a CI summary or a wiki) or html (one self-contained file)",
    )
    p.add_argument("--html", default=None, metavar="FILE", help="also write the HTML report to FILE")


async def cmd_report(
    args: argparse.Namespace, connect: Callable[[], Awaitable[SluiceClient]], console: Console
) -> ExitCode:
    """Check the arguments, connect, gather, then print in the format asked for (and write `--html FILE`)."""
    if args.run_id and not args.rollout:
        raise CliError("--run-id needs --rollout SERVICE.", ExitCode.INVALID)
    client = await connect()
    if args.rollout:
        record = await latest_record(client, args.rollout, args.run_id)
        run = await read_run(client, record)
        if record.running:  # its live status (a worker answers) says more than the history alone
            with contextlib.suppress(SluiceError):
                run = run.model_copy(update={"status": await client.status_of(record)})
        story = story_of(run)
        _emit(args, console, story, lambda: render_story_text(story), lambda: render_story_markdown(story))
        return ExitCode.OK
    until = datetime.now(UTC)
    since = until - args.since
    records = await list_records(client, since, args.service)
    report = summarize(await read_runs(client, records), since, until, args.service)
    _emit(args, console, report, lambda: render_text(report), lambda: render_markdown(report))
    return ExitCode.OK


def _emit(
    args: argparse.Namespace,
    console: Console,
    data: InsightsReport | RolloutStory,
    text: Callable[[], list[str]],
    markdown: Callable[[], list[str]],
) -> None:
    html = None
    if args.format == "html" or args.html:
        from sluice.cli.report_html import render_html  # matplotlib: imported only for HTML

        html = render_html(data)
    if args.html:
        assert html is not None
        try:
            Path(args.html).write_text(html, encoding="utf-8")
        except OSError as err:
            raise CliError(f"cannot write {args.html}: {err.strerror or err}.", ExitCode.INVALID) from None
        if args.format != "html":
            console.say(f"wrote {args.html}")
    if console.json_output:
        console.data(data)
    elif args.format == "html":
        assert html is not None
        print(html)
    elif args.format == "markdown":
        console.say(*markdown())
    else:
        console.say(*text())


# --- formatting -------------------------------------------------------------------------------


def when(at: datetime | None) -> str:
    """An absolute time in UTC to the second, as the CLI prints times; `-` for none."""
    if at is None:
        return "-"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | None) -> str:
    """`0.84s`, `42s`, `3m20s`, `2h05m`, `1d4h`; `-` for none."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.0f}s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def spread(d: Durations) -> str:
    """`median / p90 (n)`."""
    if not d.count:
        return "-"
    return f"{seconds(d.median_s)} / {seconds(d.p90_s)} ({d.count})"


SUMMARY_HEADER = (
    "",
    "rollouts",
    "promoted",
    "rolled back",
    "aborted",
    "failed",
    "running",
    "change failure rate",
    "deploys/week",
    "time to restore p50/p90",
    "start→promotion p50/p90",
    "paused",
    "awaiting approval",
)


def summary_row(name: str, f: Figures) -> list[str]:
    return [
        name,
        str(f.rollouts),
        str(f.promoted),
        str(f.rolled_back),
        str(f.aborted),
        str(f.failed),
        str(f.running),
        percent(f.change_failure_rate),
        f"{f.deployments_per_week:.2f}",
        spread(f.time_to_restore),
        spread(f.time_to_promotion),
        seconds(f.paused_total_s) if f.paused.count else "-",
        seconds(f.awaiting_approval_total_s) if f.awaiting_approval.count else "-",
    ]


def _breakdowns(report: InsightsReport) -> list[tuple[str, dict[str, int]]]:
    o = report.overall
    return [
        ("Why rollouts did not promote (cause)", o.rollback_causes),
        ("Who stopped them (operator aborts and cancels)", o.rollback_by),
        ("Metrics that rolled back", o.rollback_metrics),
        ("Reasons", o.rollback_reasons),
    ]


def title(report: InsightsReport) -> str:
    scope = f"service {report.service}" if report.service else "all services"
    return (
        f"Sluice delivery report, {scope}: {when(report.since)} → {when(report.until)} "
        f"({report.window_days:g} days, {report.overall.rollouts} rollouts)"
    )


def render_text(report: InsightsReport) -> list[str]:
    rows = [summary_row("all", report.overall)] + [summary_row(s.service, s) for s in report.services]
    lines = [title(report), "", *table(SUMMARY_HEADER, rows)]
    for heading, counts in _breakdowns(report):
        if counts:
            lines += [
                "",
                f"{heading}:",
                *table(("count", "what"), [(str(n), k) for k, n in counts.items()], "  "),
            ]
    if report.suspicious:
        lines += [
            "",
            "Possible false rollbacks (rolled back, later promoted with the same version and spec):",
        ]
        for s in report.suspicious:
            metrics = ", ".join(s.metrics) or s.cause or "?"
            lines.append(
                f"  {s.service} {s.version} (spec {s.spec_digest}): rolled back {when(s.rolled_back_at)} "
                f"({metrics}), promoted {when(s.promoted_at)} (run {s.promoted_run})"
            )
    return lines + unknown_note(report)


def unknown_note(report: InsightsReport) -> list[str]:
    n = report.overall.unknown
    if not n:
        return []
    return [
        "",
        f"{n} rollout{'s were' if n != 1 else ' was'} terminated or timed out through Temporal: "
        "no outcome recorded, left out of the rates and durations.",
    ]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    return [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows),
    ]


def render_markdown(report: InsightsReport) -> list[str]:
    rows = [summary_row("**all**", report.overall)] + [
        summary_row(f"`{s.service}`", s) for s in report.services
    ]
    lines = [f"## {title(report)}", "", *_md_table(SUMMARY_HEADER, rows)]
    for heading, counts in _breakdowns(report):
        if counts:
            lines += [
                "",
                f"### {heading}",
                "",
                *_md_table(("count", "what"), [(str(n), k) for k, n in counts.items()]),
            ]
    if report.suspicious:
        lines += ["", "### Possible false rollbacks", ""]
        lines += _md_table(
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
        )
    lines += unknown_note(report)
    lines += ["", "Definitions: docs/insights.md (`sluice report`)."]
    return lines


# --- one rollout ------------------------------------------------------------------------------


def story_title(story: RolloutStory) -> str:
    s = story.status
    versions = f"{s.stable_version or 'stable'} → {s.version}"
    return f"{s.service}: {versions}, run {story.run_id} (started {when(s.started_at)})"


def render_story_text(story: RolloutStory) -> list[str]:
    start = story.status.started_at
    lines = [story_title(story), ""]
    for event in story.events:
        offset = (event.at - start).total_seconds()
        lines.append(f"  {offset:+9.2f}s  {event.kind:<8}  {event.text}")
    f = story.facts
    lines += ["", f"decision: {story.decision}"]
    if f.restore_seconds is not None:
        lines.append(
            f"time to restore: {seconds(f.restore_seconds)} (first failing verdict → 100% stable verified)"
        )
    if f.promotion_seconds is not None:
        lines.append(f"start to promotion: {seconds(f.promotion_seconds)}")
    if f.paused_seconds or f.approval_seconds:
        lines.append(f"paused {seconds(f.paused_seconds)}, awaiting approval {seconds(f.approval_seconds)}")
    return lines


def render_story_markdown(story: RolloutStory) -> list[str]:
    start = story.status.started_at
    rows = [(f"{(e.at - start).total_seconds():+.2f}s", e.kind, e.text) for e in story.events]
    return [
        f"## {story_title(story)}",
        "",
        *_md_table(("at", "what", "detail"), rows),
        "",
        f"**Decision:** {story.decision}",
    ]
