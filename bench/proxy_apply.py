"""Benchmark: time from a traffic decision to the new split being served, per proxy router.

For each router (NGINX, Traefik, Caddy, and HAProxy for reference) a real proxy runs on
loopback in front of the two demo services, and two client threads send GETs back to back
(keep-alive connections, as browsers and service meshes do). Each run calls the router's
`set_weights` to flip all traffic, alternately to the new version (0 → 100, a promotion) and
back (100 → 0, a rollback), and measures from the moment of the call (the decision):

- `confirmed_ms`: until `set_weights` returns (the change applied and read back);
- `served_ms`: until every request that starts from then on is answered by the side the
  change sends traffic to: the start of the last request, started after the decision, that
  the other side still answered (0 if none did). Requests already in flight at the
  decision may finish on the old side; they are not counted;
- `failed`: requests that got no answer or a 5xx meanwhile (a reload that drops connections
  would show here).

Traefik runs with its default `providersThrottleDuration` (2s) unless `--traefik-throttle`
says otherwise. Prints a table and writes JSON to bench/results/proxy_apply.json (or `--out`).
Not a test. Usage: .venv/bin/python -m bench.proxy_apply [--runs 10] [--routers nginx,traefik,caddy,haproxy]
[--traefik-throttle 2s] [--out proxy_apply]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sluice.activities.routers import TrafficRouter, router_for
from sluice.contracts.spec import CaddyRouter, HAProxyRouter, NginxRouter, TraefikRouter
from tests.support.caddy import start_caddy
from tests.support.demo_service import start_demo_service
from tests.support.haproxy import start_haproxy
from tests.support.nginx import start_nginx
from tests.support.procs import free_port
from tests.support.traefik import start_traefik

RESULTS = Path(__file__).resolve().parent / "results"
ROUTERS = ("nginx", "traefik", "caddy", "haproxy")


@dataclass
class Request:
    started: float
    version: str
    ok: bool
    error: str = ""


@dataclass
class Client:
    """Threads sending GETs back to back and recording when each started and who answered."""

    url: str
    threads: int = 2
    log: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    resp = client.get(self.url)
                    entry = Request(started, resp.headers.get("X-Version", "-"), resp.status_code < 500)
                except httpx.HTTPError as err:
                    entry = Request(started, "-", False, type(err).__name__)
                with self._lock:
                    self.log.append(entry)

    @contextmanager
    def running(self) -> Iterator[Client]:
        workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        try:
            yield self
        finally:
            self._stop.set()
            for w in workers:
                w.join(10)

    def since(self, t: float) -> list[Request]:
        with self._lock:
            return [r for r in self.log if r.started >= t]


def start_proxy(name: str, workdir: Path, stable: str, canary: str, throttle: str) -> tuple[Any, Any, str]:
    """(instance with .stop(), router spec, frontend URL)."""
    if name == "nginx":
        n = start_nginx(workdir, frontend_port=free_port(), stable_addr=stable, canary_addr=canary)
        return n, NginxRouter.model_validate(n.router()), n.url
    if name == "traefik":
        t = start_traefik(
            workdir,
            web_port=free_port(),
            api_port=free_port(),
            stable_addr=stable,
            canary_addr=canary,
            throttle=throttle,
        )
        return t, TraefikRouter.model_validate({**t.router(), "timeout": "15s"}), t.url
    if name == "caddy":
        c = start_caddy(
            workdir, port=free_port(), admin_port=free_port(), stable_addr=stable, canary_addr=canary
        )
        return c, CaddyRouter.model_validate(c.router()), c.url
    h = start_haproxy(
        workdir, service="bench", frontend_port=free_port(), stable_addr=stable, canary_addr=canary
    )
    return h, HAProxyRouter.model_validate(h.router()), h.url


async def one_run(router: TrafficRouter, client: Client, to_canary: bool, settle: float) -> dict[str, Any]:
    new, old = ("v2", "v1") if to_canary else ("v1", "v2")
    await asyncio.sleep(settle)
    decided = time.monotonic()
    await router.set_weights(100 if to_canary else 0)
    confirmed = time.monotonic()
    await asyncio.sleep(settle)
    seen = client.since(decided)
    late_old = [r.started for r in seen if r.version == old]
    return {
        "direction": "promote 0→100" if to_canary else "rollback 100→0",
        "confirmed_ms": round((confirmed - decided) * 1000, 1),
        "served_ms": round((max(late_old) - decided) * 1000 if late_old else 0.0, 1),
        "requests": len(seen),
        "answered_by_new": sum(r.version == new for r in seen),
        "failed": sum(not r.ok for r in seen),
        "errors": sorted({r.error or f"{r.version} 5xx" for r in seen if not r.ok}),
    }


async def bench_router(name: str, runs: int, throttle: str, log: Callable[[str], None]) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"sluice-bench-{name}-"))
    with ExitStack() as stack:
        services = []
        for version in ("v1", "v2"):
            port = free_port()
            proc = start_demo_service(port, version, workdir)
            stack.callback(proc.stop)
            services.append(f"127.0.0.1:{port}")
        instance, spec, url = start_proxy(name, workdir / "proxy", services[0], services[1], throttle)
        stack.callback(instance.stop)
        router = router_for(spec)
        # Traefik's watch throttles reloads: let one period pass between changes, as steps do.
        settle = 2.5 if name == "traefik" and throttle == "2s" else 1.0
        rows = []
        client = Client(url + "/")
        with client.running():
            for run in range(runs):
                row = await one_run(router, client, to_canary=run % 2 == 0, settle=settle)
                rows.append(row)
                log(
                    f"{name:8} run {run + 1:2d} {row['direction']:15} confirmed {row['confirmed_ms']:7.1f} ms"
                    f"  served {row['served_ms']:7.1f} ms  failed {row['failed']} {' '.join(row['errors'])}"
                )
    return {
        "router": name,
        "median_confirmed_ms": statistics.median(r["confirmed_ms"] for r in rows),
        "max_confirmed_ms": max(r["confirmed_ms"] for r in rows),
        "median_served_ms": statistics.median(r["served_ms"] for r in rows),
        "max_served_ms": max(r["served_ms"] for r in rows),
        "failed_requests": sum(r["failed"] for r in rows),
        "requests": sum(r["requests"] for r in rows),
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--out", default="proxy_apply", help="bench/results/<out>.json")
    parser.add_argument(
        "--traefik-throttle", default="2s", help="providersThrottleDuration (Traefik's default: 2s)"
    )
    args = parser.parse_args()
    names = [n for n in args.routers.split(",") if n]
    results = [asyncio.run(bench_router(n, args.runs, args.traefik_throttle, print)) for n in names]
    report = {
        "benchmark": "proxy_apply",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "settings": {"runs": args.runs, "client_threads": 2, "traefik_throttle": args.traefik_throttle},
        "routers": results,
    }
    print()
    print(
        f"| router (median of {args.runs} runs; max) | decision → confirmed "
        "| decision → new split served | failed requests |"
    )
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['router']} | {r['median_confirmed_ms']:.0f} ms ({r['max_confirmed_ms']:.0f}) "
            f"| {r['median_served_ms']:.0f} ms ({r['max_served_ms']:.0f}) "
            f"| {r['failed_requests']} of {r['requests']} |"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.out}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
