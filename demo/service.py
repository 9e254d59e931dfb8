"""A small demo HTTP service with a switchable error rate and latency, exposing Prometheus metrics.

Run `python demo/service.py --port 8081 --version v1` (stdlib only, no package needed). Endpoints:

- `GET /`: 200 with the version in the body (or 500 for an `error_rate` fraction of requests)
- `GET /healthz`: 200 "ok"
- `GET /metrics`: Prometheus text: `http_requests_total{version,code}` and
  `http_request_duration_seconds` (histogram, `version` label), both counting `/` only
- `POST /control?error_rate=0.5&latency_ms=20`: change behaviour; returns the settings as JSON

Every response carries `X-Version`. Only `/` is affected by `error_rate` and `latency_ms`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class DemoState:
    """Behaviour settings and metrics of one demo service; thread-safe."""

    def __init__(self, version: str, error_rate: float = 0.0, latency_ms: float = 0.0) -> None:
        self.version = version
        self.error_rate = error_rate
        self.latency_ms = latency_ms
        self._lock = threading.Lock()
        self._requests: dict[int, int] = {}
        self._bucket_counts = [0] * len(BUCKETS)
        self._duration_sum = 0.0
        self._duration_count = 0
        # Seeded per process so a test run is repeatable given the same request order.
        self._random = random.Random(0)

    def settings(self) -> dict[str, object]:
        """The current behaviour as a JSON-ready mapping."""
        with self._lock:
            return {
                "version": self.version,
                "error_rate": self.error_rate,
                "latency_ms": self.latency_ms,
            }

    def configure(self, error_rate: float | None, latency_ms: float | None) -> None:
        """Change the behaviour of `/` from the next request on."""
        with self._lock:
            if error_rate is not None:
                self.error_rate = error_rate
            if latency_ms is not None:
                self.latency_ms = latency_ms

    def decide(self) -> tuple[int, float]:
        """The status and delay (seconds) for the next `/` request."""
        with self._lock:
            failed = self.error_rate > 0 and self._random.random() < self.error_rate
            return (500 if failed else 200), self.latency_ms / 1000.0

    def observe(self, code: int, seconds: float) -> None:
        """Count one `/` request in the metrics."""
        with self._lock:
            self._requests[code] = self._requests.get(code, 0) + 1
            self._duration_sum += seconds
            self._duration_count += 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self._bucket_counts[i] += 1

    def exposition(self) -> str:
        """The metrics in Prometheus' text exposition format (version 0.0.4)."""
        v = self.version
        with self._lock:
            lines = [
                "# HELP http_requests_total Requests to / by status code.",
                "# TYPE http_requests_total counter",
            ]
            codes = dict(self._requests)
            codes.setdefault(200, 0)
            codes.setdefault(500, 0)
            for code in sorted(codes):
                lines.append(f'http_requests_total{{version="{v}",code="{code}"}} {codes[code]}')
            lines += [
                "# HELP http_request_duration_seconds Latency of requests to /.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for bound, count in zip(BUCKETS, self._bucket_counts, strict=True):
                lines.append(f'http_request_duration_seconds_bucket{{version="{v}",le="{bound}"}} {count}')
            lines += [
                f'http_request_duration_seconds_bucket{{version="{v}",le="+Inf"}} {self._duration_count}',
                f'http_request_duration_seconds_sum{{version="{v}"}} {self._duration_sum}',
                f'http_request_duration_seconds_count{{version="{v}"}} {self._duration_count}',
            ]
        return "\n".join(lines) + "\n"


class DemoHandler(BaseHTTPRequestHandler):
    """Serves one request against the server's `DemoState`."""

    # Without this every small response waits for a delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server: DemoServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # thousands of requests per test; the log would only be noise

    def _send(self, code: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Version", self.server.state.version)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        state = self.server.state
        if path == "/":
            started = time.perf_counter()
            code, delay = state.decide()
            if delay > 0:
                time.sleep(delay)
            body = f"hello from {state.version}\n" if code == 200 else "injected failure\n"
            self._send(code, body)
            state.observe(code, time.perf_counter() - started)
        elif path == "/healthz":
            self._send(200, "ok\n")
        elif path == "/metrics":
            self._send(200, state.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._send(404, "not found\n")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # drain the body so keep-alive stays in sync
        if parts.path != "/control":
            self._send(404, "not found\n")
            return
        query = parse_qs(parts.query)
        try:
            error_rate = _number(query, "error_rate", 0.0, 1.0)
            latency_ms = _number(query, "latency_ms", 0.0, 60_000.0)
        except ValueError as err:
            self._send(400, json.dumps({"error": str(err)}), "application/json")
            return
        self.server.state.configure(error_rate, latency_ms)
        self._send(200, json.dumps(self.server.state.settings()), "application/json")


def _number(query: dict[str, list[str]], name: str, low: float, high: float) -> float | None:
    if name not in query:
        return None
    value = float(query[name][-1])
    if not low <= value <= high:
        raise ValueError(f"{name} must be within {low:g}..{high:g}, got {value:g}")
    return value


class DemoServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries the demo state for its handlers."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: DemoState) -> None:
        self.state = state
        super().__init__(address, DemoHandler)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", required=True, help="version label, e.g. v1")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    state = DemoState(args.version, args.error_rate, args.latency_ms)
    with (
        DemoServer((args.host, args.port), state) as server,
        contextlib.suppress(KeyboardInterrupt),
    ):
        server.serve_forever()


if __name__ == "__main__":
    main()
