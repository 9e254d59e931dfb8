"""The `sluice` CLI as a user runs it: exit code, stdout and stderr (in-process, a few as real processes)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.cli.main import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rollout.yaml"

VALID = """\
service: checkout
version: v2
router:
  type: haproxy
  admin_socket: /run/haproxy/admin.sock
  backend: be_checkout
  stable_server: stable
  canary_server: canary
steps:
{steps}
"""


def _clean_env(env: dict[str, str] | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "SLUICE_"))}
    # A config file in the user's home must not redirect the tests to a real cluster.
    base["TEMPORAL_CONFIG_FILE"] = os.devnull
    return {**base, **(env or {})}


def sluice(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in-process (`run_cli`, what `main` runs) with a clean Temporal environment.

    Parsing, validation and error texts need no new interpreter; the tests marked `process`
    below run the real `python -m sluice` for exit codes and the console script.
    """
    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(_clean_env(env))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code, _ = run_cli(list(args))
            except SystemExit as exit_:  # argparse: usage errors and --help
                code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["sluice", *args], code, out.getvalue(), err.getvalue())


def sluice_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m sluice ARGS` as a process, as a user or CI does."""
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_clean_env(env),
        timeout=60,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rollout.yaml"
    path.write_text(text)
    return str(path)


# --- validate -------------------------------------------------------------------------------


def test_validate_example() -> None:
    result = sluice("validate", "-f", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout
    assert "rollout-checkout" in result.stdout


def test_validate_example_json() -> None:
    result = sluice("validate", "-f", str(EXAMPLE), "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True
    assert data["workflow_id"] == "rollout-checkout"
    assert data["steps"] == 6


@pytest.mark.parametrize(
    ("steps", "path", "words"),
    [
        ("  - set_weight: 120", "steps[0].set_weight", "0-100"),
        ("  - set_weight: -1", "steps[0].set_weight", "0-100"),
        ("  - pause: 30", "steps[0].pause", "pause"),  # contracts: hint about units wanted
        ("  - pause: soon", "steps[0].pause", "not a duration"),
        ("  - set_weight: 10\n    pause: 30s", "steps[0]", "exactly one"),
        ("  - set_wieght: 10", "steps[0].set_wieght", "unknown field"),
        ("  []", "steps", "no steps"),
    ],
)
def test_validate_rejects_steps_with_field_path(tmp_path: Path, steps: str, path: str, words: str) -> None:
    result = sluice("validate", "-f", write(tmp_path, VALID.format(steps=steps)))
    assert result.returncode == 2
    assert f"{path}: " in result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("type: haproxy", "type: envoy", "router"),
        ("backend: be_checkout", "backend: 'be; shutdown sessions'", "router.backend"),
        ("canary_server: canary", 'canary_server: "canary\\nset weight"', "router.canary_server"),
        ("service: checkout", "service: Check Out", "service"),
        (
            "version: v2",
            "version: v2\nanalysis:\n  metrics: [{name: p95, provider: "
            "prometheus, address: 'http://127.0.0.1:9090', query: up}]",
            "analysis.metrics[0]",
        ),
        (
            "version: v2",
            "version: v2\nanalysis:\n  metrics: [{name: m, provider: datadog}]",
            "analysis.metrics[0]",
        ),
        (
            "version: v2",
            "version: v2\nanalysis:\n  interval: 5 seconds\n  metrics: "
            "[{name: m, provider: haproxy, max: 0.01}]",
            "analysis.interval",
        ),
    ],
)
def test_validate_rejects_fields_with_path(tmp_path: Path, old: str, new: str, path: str) -> None:
    text = VALID.format(steps="  - set_weight: 10").replace(old, new)
    result = sluice("validate", "-f", write(tmp_path, text))
    assert result.returncode == 2, result.stdout
    assert f"\n{path}: " in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_lists_every_issue(tmp_path: Path) -> None:
    text = VALID.format(steps="  - set_weight: 120\n  - pause: 10x").replace(
        "version: v2", "version: v2\ncolour: blue"
    )
    result = sluice("validate", "-f", write(tmp_path, text), "--output", "json")
    assert result.returncode == 2
    data = json.loads(result.stdout)
    paths = {issue["path"] for issue in data["issues"]}
    assert paths == {"colour", "steps[0].set_weight", "steps[1].pause"}
    assert "3 problems" in result.stderr


def test_validate_not_yaml_and_missing_file(tmp_path: Path) -> None:
    result = sluice("validate", "-f", write(tmp_path, "service: [unclosed"))
    assert result.returncode == 2
    assert "not valid YAML" in result.stderr
    result = sluice("validate", "-f", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot read" in result.stderr


# --- plan -----------------------------------------------------------------------------------


def test_plan_example_timeline() -> None:
    result = sluice("plan", "-f", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "shift to 10%" in out
    assert "wait for resume or promote" in out
    assert "waits for `resume` (or `promote --full`)" in out
    assert "Shortest total: 1m30s" in out
    assert "Analysis every 5s" in out


def test_plan_says_a_gate_needs_approve_not_resume(tmp_path: Path) -> None:
    spec = tmp_path / "gated.yaml"
    spec.write_text(
        EXAMPLE.read_text().replace("- pause: {}", "- approval: {approvers: [alice], timeout: 4h}")
    )
    result = sluice("plan", "-f", str(spec))
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "waits for `sluice approve checkout --by NAME --reason R`; `resume` does not pass it" in out
    assert "plus however long approvers take at step 5" in out
    assert "`sluice resume checkout`" not in out


def test_plan_example_json() -> None:
    result = sluice("plan", "-f", str(EXAMPLE), "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [s["weight"] for s in data["steps"]] == [10, 10, 50, 50, 50, 100]
    assert [s["elapsed_seconds"] for s in data["steps"]] == [0, 30, 30, 90, 90, 90]
    assert data["shortest_total_seconds"] == 90
    assert data["operator_waits"] == [4]
    assert data["analysis"]["from_step_index"] == 0
    assert [m["name"] for m in data["analysis"]["metrics"]] == [
        "canary-5xx",
        "smoke",
        "p95-latency",
    ]


def test_plan_adds_final_full_shift(tmp_path: Path) -> None:
    spec = write(tmp_path, VALID.format(steps="  - set_weight: 20\n  - pause: 1m30s"))
    data = json.loads(sluice("plan", "-f", spec, "-o", "json").stdout)
    last = data["steps"][-1]
    assert (last["step"], last["weight"], last["added"]) == ("shift to 100%", 100, True)
    assert data["shortest_total"] == "1m30s"
    assert data["analysis"] is None


def test_plan_invalid_spec_exits_2(tmp_path: Path) -> None:
    result = sluice("plan", "-f", write(tmp_path, VALID.format(steps="  - set_weight: 101")))
    assert result.returncode == 2
    assert "steps[0].set_weight: " in result.stderr


# --- commands that talk to Temporal ---------------------------------------------------------


def test_start_with_invalid_spec_never_contacts_temporal(tmp_path: Path) -> None:
    # Nothing listens there; an attempt to connect would be exit 5, not 2.
    env = {"TEMPORAL_ADDRESS": f"127.0.0.1:{closed_port()}"}
    spec = write(tmp_path, VALID.format(steps="  - set_weight: 500"))
    result = sluice_process("start", "-f", spec, "--wait", env=env)
    assert result.returncode == 2
    assert "steps[0].set_weight: " in result.stderr
    assert "Temporal" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("start", "-f", str(EXAMPLE)),
        ("status", "checkout"),
        ("status", "checkout", "--output", "json"),
        ("list",),
        ("pause", "checkout", "--reason", "looking"),
    ],
)
def test_unreachable_temporal_exits_5_in_one_line(args: tuple[str, ...]) -> None:
    address = f"127.0.0.1:{closed_port()}"
    run = sluice_process if args[0] == "start" else sluice  # one as a real process: the exit code
    result = run(*args, env={"TEMPORAL_ADDRESS": address})
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"could not reach Temporal at {address}" in result.stderr
    assert "sluice dev" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_signal_requires_a_reason() -> None:
    result = sluice("abort", "checkout")
    assert result.returncode == 2
    assert "--reason" in result.stderr
    result = sluice("abort", "checkout", "--reason", "  ")
    assert result.returncode == 2
    assert "--reason" in result.stderr


def test_service_name_checked_before_connecting() -> None:
    result = sluice("status", "Check;Out")
    assert result.returncode == 2
    assert "not a service name" in result.stderr


def test_sluice_console_script_matches_module() -> None:
    script = Path(sys.executable).parent / "sluice"
    if not script.exists():
        pytest.skip("package not installed with its console script")
    result = subprocess.run(
        [str(script), "validate", "-f", str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "command",
    [
        "",
        "validate",
        "plan",
        "start",
        "status",
        "list",
        "pause",
        "resume",
        "promote",
        "abort",
        "backtest",
        "dev",
    ],
)
def test_help_of_every_command(command: str) -> None:
    result = sluice(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: sluice" in result.stdout


def test_dev_command_registers_search_attributes() -> None:
    from sluice.cli.dev import dev_command
    from sluice.contracts.search_attributes import REGISTRATION

    cmd = dev_command("temporal", "127.0.0.1", 7233, 8233, "state.db")
    assert cmd[:3] == ["temporal", "server", "start-dev"]
    assert cmd[cmd.index("--db-filename") + 1] == "state.db"
    pairs = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--search-attribute"}
    assert pairs == {f"{name}={kind}" for name, kind in REGISTRATION.items()}


# --- schema and --set -----------------------------------------------------------------------


def test_schema_prints_the_published_json_schema() -> None:
    result = sluice("schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((ROOT / "docs" / "rollout.schema.json").read_text())


def test_set_overrides_simple_fields_on_validate_and_plan() -> None:
    result = sluice(
        "validate",
        "-f",
        str(EXAMPLE),
        "--set",
        "version=1.10",
        "--set",
        "analysis.interval=10s",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == "1.10"
    result = sluice("plan", "-f", str(EXAMPLE), "--set", "version=v9")
    assert result.returncode == 0, result.stderr
    assert "v1 → v9" in result.stdout


def test_set_errors_name_the_key_and_exit_2() -> None:
    result = sluice("start", "-f", str(EXAMPLE), "--set", "verison=v3")
    assert result.returncode == 2
    assert "--set verison: unknown field; did you mean `version`?" in result.stderr


def test_duplicate_keys_exit_2_with_the_line(tmp_path: Path) -> None:
    text = VALID.format(steps="  - set_weight: 10") + "steps:\n  - set_weight: 100\n"
    result = sluice("validate", "-f", write(tmp_path, text))
    assert result.returncode == 2
    assert (
        "steps: duplicate key at " in result.stderr and "line 11, column 1 (first at line 9" in result.stderr
    )
