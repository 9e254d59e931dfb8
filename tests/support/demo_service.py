"""Start the demo service (`demo/service.py`) as a real process for tests and the stack, and steer it."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

from tests.support.procs import ManagedProcess

DEMO_SERVICE = Path(__file__).resolve().parents[2] / "demo" / "service.py"
"""A standalone file (stdlib only), run by path so it starts from any working directory."""


def start_demo_service(
    port: int, version: str, log_dir: Path, host: str = "127.0.0.1", timeout: float = 10.0
) -> ManagedProcess:
    """Start `python demo/service.py` and wait until `/healthz` answers."""
    proc = ManagedProcess(
        [
            sys.executable,
            str(DEMO_SERVICE),
            "--host",
            host,
            "--port",
            str(port),
            "--version",
            version,
        ],
        log_dir / f"demo-{version}-{port}.log",
        name=f"demo service {version}",
    ).start()
    url = f"http://{host}:{port}/healthz"
    try:
        proc.wait_ready(lambda: _get_status(url) == 200, timeout, f"{url} answering")
    except BaseException:
        proc.stop()
        raise
    return proc


def _get_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=1) as resp:
        status: int = resp.status
        return status


def control(
    base_url: str, error_rate: float | None = None, latency_ms: float | None = None
) -> dict[str, object]:
    """POST /control on a running demo service; return its settings after the change."""
    params = {k: v for k, v in (("error_rate", error_rate), ("latency_ms", latency_ms)) if v is not None}
    url = f"{base_url.rstrip('/')}/control?{urlencode(params)}"
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        settings: dict[str, object] = json.loads(resp.read())
        return settings
