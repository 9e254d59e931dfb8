"""The `sluice` command: validate, plan, start, status, list, pause/resume/promote/abort, approve,
backtest, dev, worker, codec-server.

Exit codes (see `sluice.cli.exits.ExitCode`): 0 ok or promoted, 1 rolled back, 2 invalid input,
3 aborted by an operator or cancelled, 4 another rollout is running for the service (or this
version was already promoted with another spec), 5 Temporal unreachable, the rollout failed,
or another internal error. The Temporal calls are `sluice.runtime.client.SluiceClient`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from sluice.cli import ci, report, rollouts
from sluice.cli.codec_server import DEFAULT_PORT as CODEC_PORT
from sluice.cli.codec_server import DEFAULT_UI_ORIGINS, run_codec_server, ui_origin
from sluice.cli.console import Console
from sluice.cli.dev import run_dev_server
from sluice.cli.exits import CliError, ExitCode, exit_code_for_error
from sluice.cli.render import render_list, render_plan, render_valid
from sluice.contracts.names import TASK_QUEUE
from sluice.contracts.plan import build_plan, plan_json
from sluice.contracts.spec import (
    AnySpec,
    RingRolloutSpec,
    RolloutSpec,
    ServiceName,
    SpecIssue,
    rollout_json_schema,
)
from sluice.contracts.status import RolloutStatus
from sluice.runtime import telemetry
from sluice.runtime.client import (
    InvalidSpec,
    SluiceClient,
    SluiceError,
    StartOutcome,
    StartResult,
    read_spec_file,
)
from sluice.runtime.codec import KEY_ENV

SIGNALS = {
    "pause": "freeze progress at the current weight (analysis keeps running)",
    "resume": "continue after a pause or a `pause: {}` step",
    "promote": "skip the remaining steps and send 100% to the new version (say --full; at an "
    "approval gate only its approvers may, and --by is self-declared: see docs/operations.md, "
    "Who may steer a rollout)",
    "abort": "roll back to 100% stable now",
}


PROMOTE_DEPRECATION = (
    "sluice promote: deprecated without --full. It still skips every remaining step to 100% in "
    "this release; in the next, plain `promote` will mean what it means in Argo Rollouts, the next "
    "step only. Write `sluice promote --full` to keep skipping to 100% (`resume` passes a `pause: {}` step)."
)
"""Printed on stderr by `promote` without `--full`; a script keeps working and its log says why to change."""


@functools.cache
def quiet_runtime() -> Runtime:
    """The SDK runtime of CLI commands: its own log lines (e.g. each retry while Temporal restarts)
    go through Python logging to stderr, errors only, so stdout stays the command's (JSON) output;
    the CLI says itself when it loses Temporal."""
    forward = LogForwardingConfig(logger=logging.getLogger("sluice.cli.temporal"))
    only_errors = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=only_errors, forwarding=forward)))


async def connect() -> SluiceClient:
    """A client for one CLI command (see `SluiceClient.connect`)."""
    return await SluiceClient.connect(runtime=quiet_runtime())


def default_user() -> str:
    """Who is acting: $SLUICE_USER, else $USER, else `cli`."""
    return os.environ.get("SLUICE_USER") or os.environ.get("USER") or "cli"


# --- argument parsing -----------------------------------------------------------------------


_SERVICE_NAME: TypeAdapter[str] = TypeAdapter(ServiceName)


def _service(value: str) -> str:
    # Same rule as the spec's `service`, checked before anything is sent to Temporal.
    try:
        return _SERVICE_NAME.validate_python(value)
    except ValidationError as err:
        message = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise argparse.ArgumentTypeError(message) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description="Progressive delivery on Temporal: canary rollouts that roll themselves back.",
        epilog="Exit codes: 0 ok/promoted, 1 rolled back, 2 invalid input, 3 aborted, "
        "4 another rollout is running, 5 Temporal unreachable or internal error. "
        "Connection settings: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_PROFILE, "
        "TEMPORAL_API_KEY, TEMPORAL_TLS*.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, json_output: bool = True) -> argparse.ArgumentParser:
        escaped = help_text.replace("%", "%%")  # argparse %-formats help strings
        p = sub.add_parser(name, help=escaped, description=help_text)
        if json_output:
            p.add_argument(
                "--output",
                "-o",
                choices=("text", "json"),
                default="text",
                help="text for people (default) or json for scripts",
            )
        return p

    def spec_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--file", required=True, help="spec file, or - for stdin")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="set a simple field before validating, e.g. version=v3 or analysis.interval=10s; "
            "repeatable (text fields keep VALUE as written: version=1.10 stays 1.10)",
        )

    for name, text in (
        ("validate", "check a rollout spec; print every problem with its field path"),
        ("plan", "show the steps as a timeline with the shortest total duration"),
    ):
        spec_arguments(add(name, text))

    add("schema", "print the spec's JSON Schema, for editors (see docs/spec.md)", False)

    p = add(
        "start",
        "start the rollout a spec describes (or attach to the same one running; "
        "nothing to do if the latest rollout promoted this very spec)",
    )
    spec_arguments(p)
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow progress and exit with the outcome (a lost Temporal is retried for up to 5 minutes)",
    )
    p.add_argument("--by", default=None, help="who starts it (default $SLUICE_USER, $USER or cli)")
    p.add_argument(
        "--force",
        action="store_true",
        help="start from step 1 even if the latest rollout already promoted this version "
        "(by default a re-run of the promoted spec does nothing, and another spec is refused)",
    )

    p = add("status", "show a rollout's phase, step, weights, verdicts and operator actions")
    p.add_argument("service", type=_service)

    p = add("list", "list rollouts, newest first")
    p.add_argument("--service", type=_service, default=None, help="only this service's rollouts")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    p = add(
        "report",
        "delivery figures over a window (change failure rate, time to restore, why rollbacks "
        "happen), or one rollout explained (--rollout SERVICE)",
    )
    report.add_arguments(p, _service)

    for name, text in SIGNALS.items():
        p = add(name, f"{text}; send the `{name}` signal to a running rollout")
        p.add_argument("service", type=_service)
        p.add_argument("--reason", "-r", required=True, help="why (recorded in the rollout's status)")
        p.add_argument(
            "--by",
            default=None,
            help="who (default $SLUICE_USER, $USER or cli); recorded as given, not verified",
        )
        if name == "promote":
            p.add_argument(
                "--full",
                action="store_true",
                help="skip every remaining step to 100%% (what `promote` does today; without --full "
                "it prints a deprecation: in Argo Rollouts plain `promote` means the next step only)",
            )
        if name == "abort":
            p.add_argument(
                "--force",
                action="store_true",
                help="last resort for a rollout that cannot act (no worker, a failing workflow task): "
                "set 100%% stable through the routers from here, read it back, then terminate the "
                "workflow (its own rollback is skipped); refused, touching nothing, if a router "
                "cannot be reached",
            )

    p = add(
        "approve",
        "pass the approval gate a rollout waits at; refused unless --by names one of the gate's "
        "approvers. --by alone is self-declared, NOT verified: anyone who may signal the workflow in "
        "Temporal can type any name; --sign-with KEY makes it a verified approval "
        "(see docs/operations.md, Who may steer a rollout)",
    )
    p.add_argument("service", type=_service)
    p.add_argument(
        "--by",
        required=True,
        help="who approves: compared with the gate's approvers; recorded as unverified unless signed",
    )
    p.add_argument(
        "--sign-with",
        metavar="KEY",
        default=None,
        help="sign the approval with this SSH private key (ssh-keygen -Y sign): the worker verifies it "
        "against its SLUICE_ALLOWED_SIGNERS for --by, and records it as verified; required by gates "
        "with require_verified: true. Only the signature is sent",
    )
    p.add_argument("--reason", "-r", required=True, help="why (recorded in the rollout's history and status)")

    p = add(
        "backtest",
        "judge recorded counters (JSON lines) with a spec's `compare: stable` analysis, tick by "
        "tick, as the workflow would; no Temporal needed",
    )
    p.add_argument("-f", "--file", required=True, help="spec file, or - for stdin")
    p.add_argument("--data", required=True, help="JSON lines, one record per analysis tick, or - for stdin")

    p = add("dev", "run a local Temporal dev server with Sluice's search attributes", False)
    p.add_argument("--ip", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7233, help="frontend gRPC port (default 7233)")
    p.add_argument("--ui-port", type=int, default=8233, help="Web UI port (default 8233)")
    p.add_argument("--db-filename", "-f", default=None, help="keep state in this SQLite file")
    p.add_argument(
        "--ui-codec-endpoint", default=None, help="codec server the Web UI decodes with (sluice codec-server)"
    )

    p = add(
        "worker",
        "run a Sluice worker: hosts rollouts and their activities until SIGINT/SIGTERM",
        False,
    )
    p.add_argument(
        "--task-queue", default=TASK_QUEUE, help=f"task queue to poll (default {TASK_QUEUE!r}, the CLI's)"
    )
    p.add_argument(
        "--log-level",
        default=None,
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default $SLUICE_LOG_LEVEL, else INFO)",
    )
    p.add_argument(
        "--metrics-address",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics here, or off (default $SLUICE_METRICS_ADDRESS, else off)",
    )

    p = add(
        "codec-server",
        f"decrypt and encrypt payloads with {KEY_ENV} for the Temporal Web UI and CLI (HTTP)",
        False,
    )
    p.add_argument(
        "--ip", default="127.0.0.1", help="address to bind (default 127.0.0.1: it decrypts for anyone)"
    )
    p.add_argument("--port", type=int, default=CODEC_PORT, help=f"port (default {CODEC_PORT})")
    p.add_argument(
        "--ui-origin",
        action="append",
        type=ui_origin,
        default=None,
        help=f"Web UI origin browsers may call from; repeatable (default {' and '.join(DEFAULT_UI_ORIGINS)})",
    )
    return parser


# --- commands -------------------------------------------------------------------------------


def read_spec(path: str, overrides: Sequence[str] = ()) -> tuple[AnySpec, str]:
    """Load and validate a spec with `--set` overrides; unreadable or invalid raises `InvalidSpec`."""
    return read_spec_file(path, overrides), "<stdin>" if path == "-" else path


def spec_invalid(source: str, issues: list[SpecIssue], console: Console) -> ExitCode:
    count = len(issues)
    console.warn(f"{source} is invalid ({count} problem{'s' if count != 1 else ''}):")
    for issue in issues:
        console.warn(f"{issue.path}: {issue.message}" if issue.path else issue.message)
    if console.json_output:
        console.data({"valid": False, "issues": [i.model_dump() for i in issues]})
    return ExitCode.INVALID


def cmd_validate(args: argparse.Namespace, console: Console) -> ExitCode:
    spec, source = read_spec(args.file, args.set)
    if console.json_output:
        console.data(
            {
                "valid": True,
                "service": spec.service,
                "version": spec.version,
                "workflow_id": spec.workflow_id,
                "spec_digest": spec.digest(),
                "steps": len(spec.effective_steps()),
                "strategy": spec.strategy,
                "rings": [r.name for r in spec.rings] if isinstance(spec, RingRolloutSpec) else None,
            }
        )
    else:
        console.say(*render_valid(source, spec))
    return ExitCode.OK


def cmd_plan(args: argparse.Namespace, console: Console) -> ExitCode:
    spec, _ = read_spec(args.file, args.set)
    plan = build_plan(spec)
    if console.json_output:
        console.data(plan_json(plan))
    else:
        console.say(*render_plan(plan))
    return ExitCode.OK


async def cmd_start(args: argparse.Namespace, console: Console) -> ExitCode:
    spec, _ = read_spec(args.file, args.set)  # invalid: exit 2 before Temporal is contacted
    attributes = {"sluice.service": spec.service, "sluice.version": spec.version}
    # The trace begins here: the workflow, its activities and later signals join it.
    with telemetry.cli_span("sluice start", attributes) as span:
        client = await connect()
        started = await client.start(spec, args.by or default_user(), force=args.force)
    trace_id = telemetry.trace_id_of(span)
    link = client.ui_link(spec.service)

    def step_summary(final: RolloutStatus) -> None:
        # A ring rollout's steps live in its rings; the summary then lists verdicts only.
        steps_of = spec if isinstance(spec, RolloutSpec) else None
        ci.append_step_summary(ci.markdown_summary(final, steps_of, link, trace_id))

    if started.outcome == StartOutcome.ATTACHED:
        rollouts.say_attached(spec, started, console)
    if started.outcome == StartOutcome.ALREADY_PROMOTED:
        code = rollouts.say_already_promoted(client, spec, started, console, args.wait, step_summary)
        if console.json_output and not args.wait:
            console.data(start_json(client, started, link, trace_id))
        return code
    if args.wait:
        console.say(f"rollout {started.workflow_id}: {link}", f"trace id: {trace_id}")
        live = ci.LiveView() if ci.live_terminal(sys.stdout, console.json_output) else None
        return await rollouts.follow(client, spec.service, started.run_id, console, live, step_summary)
    if console.json_output:
        console.data(start_json(client, started, link, trace_id))
    else:
        console.say(
            f"rollout {started.workflow_id} is running: {spec.service} → {spec.version}",
            f"web UI: {link}",
            f"trace id: {trace_id}",
            f"follow it: sluice status {spec.service}",
        )
    return ExitCode.OK


def start_json(client: SluiceClient, started: StartResult, link: str, trace_id: str) -> dict[str, object]:
    """`sluice start --output json` without `--wait`: where the rollout is, and what `start` did."""
    return {
        "workflow_id": started.workflow_id,
        "run_id": started.run_id,
        "namespace": client.namespace,
        "ui_url": link,
        "spec_digest": started.spec_digest,
        "trace_id": trace_id,
        "outcome": started.outcome.value,
        **({"status": started.status.model_dump(mode="json")} if started.status else {}),
    }


async def cmd_status(args: argparse.Namespace, console: Console) -> ExitCode:
    client = await connect()
    return await rollouts.show_status(client, args.service, console)


async def cmd_list(args: argparse.Namespace, console: Console) -> ExitCode:
    client = await connect()
    rows = rollouts.list_rows(await client.list_rollouts(args.service, max(1, args.limit)))
    if console.json_output:
        console.data(rows)
    else:
        console.say(*render_list(rows))
    return ExitCode.OK


async def cmd_report(args: argparse.Namespace, console: Console) -> ExitCode:
    return await report.cmd_report(args, connect, console)


async def cmd_signal(args: argparse.Namespace, console: Console) -> ExitCode:
    reason = args.reason.strip()
    if not reason:
        raise CliError("--reason must say why; it is recorded with the action.", ExitCode.INVALID)
    client = await connect()
    if getattr(args, "force", False):
        forced = await client.force_abort(args.service, args.by or default_user(), reason)
        return rollouts.say_forced(forced, console)
    if args.command == "promote" and not args.full:
        console.warn(PROMOTE_DEPRECATION)
    sent = await client.signal(args.service, args.command, args.by or default_user(), reason)
    return rollouts.say_signalled(sent, args.service, console)


async def cmd_approve(args: argparse.Namespace, console: Console) -> ExitCode:
    reason, by = args.reason.strip(), args.by.strip()
    if not reason or not by:
        raise CliError(
            "--by and --reason must not be empty; both are recorded with the approval.", ExitCode.INVALID
        )
    client = await connect()
    approved = await client.approve(args.service, by, reason, sign_with=args.sign_with)
    return rollouts.say_approved(approved, console)


ASYNC_COMMANDS: dict[str, Callable[[argparse.Namespace, Console], Coroutine[Any, Any, ExitCode]]] = {
    "start": cmd_start,
    "status": cmd_status,
    "list": cmd_list,
    "report": cmd_report,
    "approve": cmd_approve,
    **dict.fromkeys(SIGNALS, cmd_signal),
}


def run(args: argparse.Namespace, console: Console) -> int:
    if args.command == "validate":
        return cmd_validate(args, console)
    if args.command == "plan":
        return cmd_plan(args, console)
    if args.command == "backtest":
        from sluice.cli.backtest import cmd_backtest  # numpy and the judge: only when needed

        return cmd_backtest(args, console)
    if args.command == "schema":
        console.say(json.dumps(rollout_json_schema(), indent=2))
        return ExitCode.OK
    if args.command == "dev":
        return run_dev_server(args.ip, args.port, args.ui_port, args.db_filename, args.ui_codec_endpoint)
    if args.command == "worker":
        return _run_worker(args)
    if args.command == "codec-server":
        return run_codec_server(args.ip, args.port, args.ui_origin or list(DEFAULT_UI_ORIGINS))
    return asyncio.run(ASYNC_COMMANDS[args.command](args, console))


def _run_worker(args: argparse.Namespace) -> int:
    from sluice.worker import run_worker  # imports every workflow and activity: only when needed

    try:
        asyncio.run(run_worker(args.log_level, args.metrics_address, args.task_queue))
    except ValueError as err:  # a bad --metrics-address / SLUICE_METRICS_ADDRESS
        raise CliError(f"{err}.", ExitCode.INVALID) from None
    return ExitCode.OK


def run_cli(argv: Sequence[str] | None = None) -> tuple[int, bool]:
    """Run one command; return its exit code and whether it started Temporal's client runtime.

    Errors are one or two sentences on stderr, never a traceback.
    """
    args = build_parser().parse_args(argv)  # bad arguments: usage on stderr, exit 2
    console = Console(json_output=getattr(args, "output", "text") == "json")
    used_temporal = args.command in ASYNC_COMMANDS or args.command == "worker"
    if args.command in ASYNC_COMMANDS:  # the worker names its own traces (sluice-worker)
        telemetry.configure_tracing("sluice-cli")
    try:
        return run(args, console), used_temporal
    except InvalidSpec as err:
        if not err.issues:  # unreadable
            console.warn(f"sluice {args.command}: {err.message}")
            return ExitCode.INVALID, used_temporal
        return spec_invalid(err.source, err.issues, console), used_temporal
    except SluiceError as err:
        console.warn(f"sluice {args.command}: {err.message}")
        return exit_code_for_error(err), used_temporal
    except CliError as err:
        console.warn(f"sluice {args.command}: {err.message}")
        return err.code, used_temporal
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as `cat` would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK, used_temporal
    except KeyboardInterrupt:
        console.warn(f"sluice {args.command}: interrupted.")
        return 130, used_temporal
    except Exception as err:  # the promise is: never a traceback
        console.warn(
            f"sluice {args.command}: internal error ({type(err).__name__}: {err}); "
            "please report it with the command you ran."
        )
        return ExitCode.UNAVAILABLE, used_temporal


def main(argv: Sequence[str] | None = None) -> int:
    """The process entry point (`sluice`, `python -m sluice`); returns the exit code.

    After a command that used the Temporal client it ends the process with `os._exit`:
    the SDK's Rust threads can abort interpreter shutdown ("PyGILState_Release ... must be
    current", temporalio/sdk-python#300), turning a clean exit code into 134 or 139.
    Call `run_cli` instead to stay in-process.
    """
    code, used_temporal = run_cli(argv)
    if used_temporal:
        with contextlib.suppress(Exception):
            telemetry.shutdown()  # export buffered spans; os._exit skips atexit
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
