"""`sluice backtest -f SPEC --data FILE`: print what the analysis would have decided on recorded data.

With `--output json` stdout holds one JSON line per input tick and nothing else; without it, a
table per run and a one-line summary of each run. The judging is `sluice.runtime.backtest`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import IO

from sluice.cli.console import Console
from sluice.cli.exits import CliError, ExitCode
from sluice.contracts.spec import AnalysisSpec, AnySpec
from sluice.contracts.status import Verdict
from sluice.runtime.backtest import InvalidData, TickResult, backtest, compared_metrics, not_judged
from sluice.runtime.client import read_spec_file

_MARK = {Verdict.PASS: "pass", Verdict.FAIL: "FAIL", Verdict.INCONCLUSIVE: "incon"}


def analysis_of(spec: AnySpec, source: str) -> AnalysisSpec:
    """The analysis a backtest judges: the spec's top-level `analysis` (rings inherit it)."""
    if spec.analysis is None or not compared_metrics(spec.analysis):
        raise CliError(
            f"{source} has no `analysis` with a `compare: stable` metric; a backtest judges those",
            ExitCode.INVALID,
        )
    return spec.analysis


@contextlib.contextmanager
def _open(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
        return
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed below, after streaming
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror or err}", ExitCode.INVALID) from None
    with f:
        yield f


def cmd_backtest(args: argparse.Namespace, console: Console) -> ExitCode:
    spec = read_spec_file(args.file)
    source = "<stdin>" if args.file == "-" else args.file
    analysis = analysis_of(spec, source)
    skipped = not_judged(analysis)
    if skipped:
        names = ", ".join(m.name for m in skipped)
        console.warn(f"not judged (not `compare: stable`; a backtest has no live system to ask): {names}")
    data_name = "<stdin>" if args.data == "-" else args.data
    with _open(args.data) as f:
        results = backtest(analysis, f)
        try:
            if console.json_output:
                for r in results:
                    sys.stdout.write(json.dumps(r.as_json(), ensure_ascii=False) + "\n")
            else:
                _print_table(results, [m.name for m in compared_metrics(analysis)])
        except InvalidData as err:
            raise CliError(f"{data_name} {err}", ExitCode.INVALID) from None
    return ExitCode.OK


def _print_table(results: Iterator[TickResult], names: list[str]) -> None:
    header = f"{'t':>8} {'weight':>6}  {'tick':<5} {'decision':<8} {'bake?':<5}  " + "  ".join(
        f"{n[:22]:>22}" for n in names
    )
    run: str | None = None
    last: TickResult | None = None
    first_end: float | None = None
    for r in results:
        if r.run != run:
            if last is not None:
                _summary(last, first_end)
            run, first_end = r.run, None
            print(f"run {r.run}")
            print(header)
        if r.may_end_bake and first_end is None:
            first_end = r.t
        cells = []
        for v in r.verdicts:
            e = v.comparison.e_value if v.comparison is not None else None
            cells.append(f"{_MARK[v.verdict]} e={e:.3g}" if e is not None else _MARK[v.verdict])
        print(
            f"{r.t:>8g} {r.weight:>6g}  {'base' if r.baseline else _MARK[r.tick]:<5} "
            f"{r.decision.action:<8} {'yes' if r.may_end_bake else 'no':<5}  "
            + "  ".join(f"{c:>22}" for c in cells),
            flush=False,
        )
        last = r
    if last is not None:
        _summary(last, first_end)
    sys.stdout.flush()


def _summary(last: TickResult, first_end: float | None) -> None:
    if last.decision.action == "rollback":
        outcome = f"rolled back at t={last.t:g}: {last.decision.reason}"
    else:
        outcome = f"not rolled back by t={last.t:g}"
    bake = f"a bake could first end at t={first_end:g}" if first_end is not None else "no tick passed"
    print(f"=> run {last.run}: {outcome}; {bake}\n")
