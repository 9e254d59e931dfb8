"""A real AWS API server on loopback: `moto_server` from PyPI (`moto[server]`), reset between tests."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sluice.runtime.binaries import find_binary
from tests.support.procs import ManagedProcess, free_port

REGION = "us-east-1"


def moto_binary() -> str:
    """`moto_server` next to the interpreter (the venv), else on PATH."""
    found = find_binary("moto_server")
    if found is None:
        raise FileNotFoundError("moto_server is not installed; run `pip install -e '.[dev]'`")
    return found


@dataclass
class MotoServer:
    """A running `moto_server`: boto3 reaches it through `env()` exactly as it would reach AWS."""

    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for boto3 in any process (worker, CLI, tests): endpoint, fake keys, region."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def reset(self) -> None:
        """Forget every resource (`POST /moto-api/reset`)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read()

    def stop(self) -> None:
        self.process.stop()


def _answers(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as reply:
        return bool(reply.status == 200)


def start_moto_server(workdir: Path, port: int | None = None, timeout: float = 30.0) -> MotoServer:
    """Start `moto_server -H 127.0.0.1 -p P` and wait until it answers."""
    port = port or free_port()
    proc = ManagedProcess(
        [moto_binary(), "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log", name="moto_server"
    ).start()
    server = MotoServer(process=proc, port=port)
    try:
        proc.wait_ready(lambda: _answers(server.url), timeout, f"moto_server on port {port}")
    except BaseException:
        proc.stop()
        raise
    return server
