"""The demo (`scripts/demo`) stops every process it started when it is terminated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT
from tests.support.procs import wait_until

pytestmark = pytest.mark.integration


def children_of(pid: int) -> set[int]:
    """PIDs whose parent is `pid` (from /proc)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_whole_demo_stack() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo.run", "--no-keep"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    started: set[int] = set()
    try:
        assert demo.stdout is not None
        for line in demo.stdout:  # the stack is up once its log directory is printed
            if line.startswith("logs:"):
                break
        started = children_of(demo.pid)
        assert len(started) >= 5, started  # dev server, worker, two demo services, HAProxy
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 128 + signal.SIGTERM
        wait_until(lambda: not any(alive(pid) for pid in started), 20, 0.2, "the demo's processes gone")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in started:  # whatever the outcome, leave no process behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
