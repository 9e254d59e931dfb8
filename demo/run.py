"""The end-to-end demo: a healthy rollout promoted, then a failing one rolled back by itself.

Run with `scripts/demo` (which also installs what is missing) or `python -m demo.run`.
Starts a Temporal dev server (Web UI on 8233 when free), a Sluice worker, two versions
of a demo service behind HAProxy, and a load generator at 50 requests/s; then runs two
real rollouts with the `sluice` CLI, exactly as CI would.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.load import LoadGenerator
from tests.support.stack import LocalStack, start_local_stack

STEPS: list[dict[str, Any]] = [
    {"set_weight": 10},
    {"pause": "10s"},
    {"set_weight": 50},
    {"pause": "10s"},
    {"set_weight": 100},
]


def _analysis(stack: LocalStack) -> dict[str, object]:
    return {
        "interval": "1s",
        "failure_limit": 0,
        "inconclusive_limit": 15,
        "metrics": [
            {"name": "canary-5xx", "provider": "haproxy", "max": 0.02, "min_requests": 20},
            {
                "name": "smoke",
                "provider": "http",
                "url": f"{stack.canary_url}/healthz",
                "requests": 3,
                "min_success_ratio": 1.0,
            },
        ],
    }


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def sluice(stack: LocalStack, *args: str) -> int:
    """Run the real CLI, its output streaming to this terminal."""
    env = {**os.environ, **stack.server.env()}
    return subprocess.run([sys.executable, "-m", "sluice", *args], env=env, check=False).returncode


def ui_link(stack: LocalStack) -> str:
    return f"{stack.server.ui_url}/namespaces/default/workflows/rollout-{stack.service}"


def healthy_rollout(stack: LocalStack) -> int:
    say("Rollout 1: v2 is healthy, so it goes 10% → 50% → 100% and is promoted")
    spec = stack.workdir / "rollout-v2.yaml"
    spec.write_text(stack.spec("v2", "v1", STEPS, **_analysis(stack)))
    sluice(stack, "plan", "-f", str(spec))
    return sluice(stack, "start", "-f", str(spec), "--wait")


def failing_rollout(stack: LocalStack, load: LoadGenerator) -> tuple[int, float | None, int]:
    say("Rollout 2: v3 starts returning 500s during its first bake; Sluice rolls it back by itself")
    # v2 is now the stable version: deploy it on the stable server, v3 next to it.
    stack.deploy("stable", "v2")
    stack.reset_weights()
    stack.deploy("canary", "v3")
    spec = stack.workdir / "rollout-v3.yaml"
    spec.write_text(stack.spec("v3", "v2", STEPS, **_analysis(stack)))
    broke_at: list[float] = []

    def break_after_shift() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not load.counts().by_version.get("v3"):
            time.sleep(0.1)
        time.sleep(3)  # a few healthy seconds at 10% first
        load.reset()
        broke_at.append(time.monotonic())
        stack.break_canary(1.0)
        print(f"{time.strftime('%H:%M:%S')}  demo: v3 now answers every request with 500", flush=True)

    breaker = threading.Thread(target=break_after_shift, daemon=True)
    breaker.start()
    code = sluice(stack, "start", "-f", str(spec), "--wait")
    breaker.join(timeout=5)
    counts = load.counts()
    took = None
    if broke_at and "v3" in counts.last_seen:
        took = counts.last_seen["v3"] - broke_at[0]
    failed = counts.by_version_status.get(("v3", 500), 0)
    return code, took, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run two real rollouts on a local stack.")
    parser.add_argument("--no-keep", action="store_true", help="stop everything at the end")
    parser.add_argument("--rate", type=float, default=50.0, help="load in requests/s (default 50)")
    args = parser.parse_args(argv)

    # `kill`, `timeout` or a closed terminal stop everything too, not only Ctrl-C: SystemExit
    # unwinds through the `finally` below, which stops every process the stack started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix="sluice-demo-"))
    say("Starting Temporal dev server, Sluice worker, HAProxy, demo services v1 and v2")
    stack = start_local_stack(workdir, temporal_port=7233, ui_port=8233, frontend_port=8080)
    print(f"Temporal:   {stack.server.address}  (Web UI {stack.server.ui_url})")
    print(f"HAProxy:    {stack.haproxy.url}  → stable {stack.stable_url}, canary {stack.canary_url}")
    print(f"logs:       {workdir}")
    try:
        with LoadGenerator(stack.haproxy.url, rate=args.rate) as load:
            first = healthy_rollout(stack)
            second, took, failed = failing_rollout(stack, load)
        say("Result")
        print(f"rollout 1 (v2): exit {first} ({'promoted' if first == 0 else 'NOT promoted'})")
        print(f"rollout 2 (v3): exit {second} ({'rolled back' if second == 1 else 'NOT rolled back'})")
        if took is not None:
            print(
                f"time from v3's first 500 to 100% of requests on stable: {took:.2f}s; "
                f"{failed} requests got a 500 meanwhile"
            )
        print(f"Web UI: {ui_link(stack)}  (the latest run; earlier runs are listed under the same id)")
        ok = first == 0 and second == 1
        if not args.no_keep:
            print("\nEverything keeps running so you can look around; Ctrl-C stops it.")
            print(f"  export TEMPORAL_ADDRESS={stack.server.address}; sluice status {stack.service}")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
