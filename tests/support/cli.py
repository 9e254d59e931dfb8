"""The one way tests run the real `sluice` command as a process (exit codes, stdout/stderr, env)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_sluice(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120, clean_temporal_env: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `python -m sluice ARGS` from the repository root and capture its output.

    `env` is added to this process's environment; `clean_temporal_env` first drops every
    `TEMPORAL_*` variable, so a developer's own Temporal settings cannot leak into a test.
    """
    base = dict(os.environ)
    if clean_temporal_env:
        base = {k: v for k, v in base.items() if not k.startswith("TEMPORAL_")}
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=ROOT,
        timeout=timeout,
    )
