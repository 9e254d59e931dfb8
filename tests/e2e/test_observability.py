"""Tracing, metrics, notifications and payload encryption on the real stack."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sluice.cli import main as cli
from sluice.cli.console import Console
from sluice.contracts.names import QUERY_STATUS
from sluice.contracts.status import RolloutStatus
from sluice.runtime import telemetry
from sluice.runtime.connect import connect_client
from sluice.worker import build_worker
from tests.e2e.conftest import ROOT, Stack
from tests.e2e.test_rollouts import wait_status
from tests.support.procs import ManagedProcess, free_port, wait_until
from tests.support.prometheus import start_prometheus
from tests.support.temporal import start_worker

pytestmark = pytest.mark.integration


async def _wait_phase(client: Any, workflow_id: str, phase: str) -> RolloutStatus:
    handle = client.get_workflow_handle(workflow_id)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        status: RolloutStatus = await handle.query(QUERY_STATUS, result_type=RolloutStatus)
        if status.phase.value == phase:
            return status
        assert asyncio.get_running_loop().time() < deadline, f"phase {phase} not reached: {status}"
        await asyncio.sleep(0.2)


async def test_start_activities_and_signals_form_one_trace(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exporter = InMemorySpanExporter()
    telemetry.configure_tracing("sluice-test", SimpleSpanProcessor(exporter))
    for key, value in stack.server.env().items():
        monkeypatch.setenv(key, value)
    spec = stack.spec([{"set_weight": 50}, {"pause": {}}, {"set_weight": 100}])
    parser = cli.build_parser()
    console = Console(json_output=False)

    client = await connect_client()
    async with build_worker(client):
        code = await cli.cmd_start(parser.parse_args(["start", "-f", str(spec)]), console)
        assert code == 0
        printed = capsys.readouterr().out
        trace_id = next(line.split()[-1] for line in printed.splitlines() if line.startswith("trace id:"))
        await _wait_phase(client, f"rollout-{stack.service}", "paused")
        resume = parser.parse_args(["resume", stack.service, "--reason", "looks fine", "--by", "alice"])
        assert await cli.cmd_signal(resume, console) == 0
        final = await client.get_workflow_handle(
            f"rollout-{stack.service}", result_type=RolloutStatus
        ).result()
        assert final.phase.value == "promoted"

    spans = [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    names = set(by_name)
    assert {
        "sluice start",
        "StartWorkflow:Rollout",
        "RunWorkflow:Rollout",
        "StartActivity:preflight",
        "RunActivity:preflight",
        "StartActivity:set_traffic",
        "RunActivity:set_traffic",
        "sluice resume",
        "SignalWorkflow:resume",
        "HandleSignal:resume",
    } <= names, sorted(names)
    ids = {s.context.span_id: s for s in spans}

    def parent(span: ReadableSpan) -> str | None:
        return ids[span.parent.span_id].name if span.parent and span.parent.span_id in ids else None

    (root,) = by_name["sluice start"]
    assert root.parent is None
    assert root.attributes is not None and root.attributes["sluice.service"] == stack.service
    assert parent(by_name["StartWorkflow:Rollout"][0]) == "sluice start"
    assert parent(by_name["RunWorkflow:Rollout"][0]) == "StartWorkflow:Rollout"
    # The SDK's interceptor hangs the workflow's own spans (zero-length, replay-safe) off the
    # span that started it.
    assert {parent(s) for s in by_name["StartActivity:set_traffic"]} == {"StartWorkflow:Rollout"}
    assert len(by_name["RunActivity:set_traffic"]) == 2  # 50%, then 100%
    assert {parent(s) for s in by_name["RunActivity:set_traffic"]} == {"StartActivity:set_traffic"}
    assert parent(by_name["SignalWorkflow:resume"][0]) == "sluice resume"
    assert parent(by_name["HandleSignal:resume"][0]) == "StartWorkflow:Rollout"
    # The status polls are not traced (an unsampled parent), so the trace stays readable.
    assert not any(name.startswith(("QueryWorkflow", "HandleQuery")) for name in names)


class OtlpReceiver:
    """A real OTLP/HTTP trace receiver on loopback: decodes every `POST /v1/traces` (protobuf)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        """(service.name of the sender, span name, trace id in hex) of every span received."""
        self.content_types: set[str] = set()
        spans, content_types = self.spans, self.content_types

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                content_types.add(self.headers.get("Content-Type", ""))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            spans.append((attrs.get("service.name", ""), span.name, span.trace_id.hex()))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_spans_are_exported_over_otlp_when_the_endpoint_is_set(stack: Stack, tmp_path: Path) -> None:
    otlp = OtlpReceiver()
    export = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # ms: the worker's batch goes out quickly
    }
    worker = start_worker(stack.server, tmp_path / "worker.log", export)
    try:
        spec = stack.spec([{"set_weight": 50}, {"pause": "1s"}, {"set_weight": 100}])
        done = stack.sluice("start", "-f", str(spec), "--wait", env=export)
        assert done.returncode == 0, done.stdout + done.stderr
        trace_id = next(line.split()[-1] for line in done.stdout.splitlines() if "trace id:" in line)
        want = {
            ("sluice-cli", "sluice start"),
            ("sluice-cli", "StartWorkflow:Rollout"),
            ("sluice-worker", "RunWorkflow:Rollout"),
            ("sluice-worker", "RunActivity:set_traffic"),
        }

        def received() -> set[tuple[str, str]]:
            return {(service, name) for service, name, t in list(otlp.spans) if t == trace_id}

        wait_until(lambda: want <= received(), 20, 0.2, f"spans of trace {trace_id} at the receiver")
        assert otlp.content_types == {"application/x-protobuf"}
    finally:
        worker.stop()
        otlp.stop()


class Receiver:
    """A real webhook receiver on loopback that records every POST (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                posts.append((self.path, dict(self.headers), json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def event_order(post: tuple[str, dict[str, str], Any]) -> int:
    return int(post[1]["X-Sluice-Event-Id"].rsplit("/", 1)[1])


def test_notifications_and_metrics_of_a_rollback_and_a_promotion(
    stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    secret_url = receiver.url("/hooks/T000/secret-token-4711")
    metrics_at = f"127.0.0.1:{free_port()}"
    worker = start_worker(
        stack.server,
        tmp_path / "worker.log",
        {"SLUICE_METRICS_ADDRESS": metrics_at, "TEAM_WEBHOOK": secret_url},
    )
    prometheus = start_prometheus(tmp_path / "prometheus", port=free_port(), targets=[metrics_at])
    try:
        down = f"http://127.0.0.1:{free_port()}/nobody-listens"
        spec = stack.spec(
            [{"set_weight": 20}, {"pause": "1m"}, {"set_weight": 100}],
            interval="1s",
            metrics=[
                {
                    "name": "smoke",
                    "provider": "http",
                    "url": f"{stack.canary_url}/",
                    "requests": 3,
                    "min_success_ratio": 1.0,
                }
            ],
        )
        data = yaml.safe_load(spec.read_text())
        data["notify"] = [
            {"url_env": "TEAM_WEBHOOK"},
            {"url": receiver.url("/slack"), "format": "slack"},
            {"url": down, "format": "json", "timeout": "1s"},  # a receiver that is down
        ]
        spec.write_text(yaml.safe_dump(data))
        done = stack.sluice("start", "-f", str(spec))
        assert done.returncode == 0, done.stderr
        wait_status(stack, lambda s: s["analysis"]["ticks"] >= 2)
        stack.canary_errors(1.0)
        rolled = wait_status(stack, lambda s: s["phase"] == "rolled_back", timeout=30)
        assert rolled["weights"] == {"stable": 100, "canary": 0}
        stack.canary_errors(0.0)

        # Notifications are delivered by activities after the phase changes (never blocking
        # the rollback), so the last ones may arrive a moment after the status shows it.
        def delivered(path: str) -> int:
            return sum(1 for p in list(receiver.posts) if p[0] == path)

        wait_until(
            lambda: delivered("/hooks/T000/secret-token-4711") >= 4 and delivered("/slack") >= 4,
            20,
            0.2,
            "the rolled_back notifications delivered",
        )
        json_posts = sorted(
            (p for p in receiver.posts if p[0] == "/hooks/T000/secret-token-4711"), key=event_order
        )
        events = [(p[2]["kind"], p[2]["phase"]) for p in json_posts]
        assert events == [
            ("phase_changed", "progressing"),
            ("verdict_failed", "progressing"),
            ("phase_changed", "rolling_back"),
            ("phase_changed", "rolled_back"),
        ], events
        failed = json_posts[1][2]["failed"]
        assert [v["metric"] for v in failed] == ["smoke"] and failed[0]["verdict"] == "fail"
        assert json_posts[-1][2]["weights"] == {"stable": 100, "canary": 0}
        assert json_posts[0][2]["ui_url"].endswith(f"/workflows/rollout-{stack.service}")
        slack = [p[2] for p in sorted((p for p in receiver.posts if p[0] == "/slack"), key=event_order)]
        assert len(slack) == 4 and set(slack[0]) == {"text"}
        assert f"*{stack.service} v1 → v2: rolled back*" in slack[-1]["text"]

        # The secret URL never reached the history; the dead receiver was retried, then dropped.
        history = history_text(stack)
        assert "secret-token-4711" not in history
        assert "TEAM_WEBHOOK" in history and "/nobody-listens" in history

        # The workflow closes once the last notifications are delivered, or after 5 s for the
        # receiver that is down; traffic was back on stable before that.
        wait_until(lambda: closed(stack), 20, 0.5, "the rolled-back workflow closed")
        # A second, healthy rollout of the same service is promoted.
        quick = stack.spec([{"set_weight": 100}], version="v2")
        assert stack.sluice("start", "-f", str(quick), "--wait").returncode == 0

        service = f'service="{stack.service}"'
        checks = {
            f"sluice_rollouts_started_total{{{service}}}": 2,
            f'sluice_rollouts_finished_total{{{service},phase="rolled_back"}}': 1,
            f'sluice_rollouts_finished_total{{{service},phase="promoted"}}': 1,
            f"sluice_rollback_seconds_count{{{service}}}": 1,
        }
        for promql, want in checks.items():
            wait_until(lambda q=promql, w=want: _value(prometheus.query(q)) == w, 20, 0.5, promql)
        passes = _value(prometheus.query(f'sum(sluice_analysis_verdicts_total{{{service},verdict="pass"}})'))
        fails = _value(prometheus.query(f'sum(sluice_analysis_verdicts_total{{{service},verdict="fail"}})'))
        assert passes is not None and passes >= 2 and fails == 1
        seconds = _value(prometheus.query(f"sluice_rollback_seconds_sum{{{service}}}"))
        assert seconds is not None and 0 <= seconds < 10
        # The Temporal runtime's own metrics are on the same endpoint.
        assert _value(prometheus.query('sum(temporal_workflow_completed_total{workflow_type="Rollout"})'))
    finally:
        prometheus.stop()
        worker.stop()


def closed(stack: Stack) -> bool:
    listed = stack.sluice("list", "--service", stack.service, "-o", "json")
    return listed.returncode == 0 and json.loads(listed.stdout)[0]["temporal_status"] == "completed"


def history_text(stack: Stack, *options: str) -> str:
    """The rollout's whole history as text, with every payload's base64 data decoded.

    `options` go to `temporal workflow show` (e.g. `--codec-endpoint URL`).
    """
    shown = stack.temporal(
        "workflow", "show", "--workflow-id", f"rollout-{stack.service}", "-o", "json", *options
    )
    assert shown.returncode == 0, shown.stderr
    parts = [shown.stdout]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    parts.append(base64.b64decode(value).decode("utf-8", "replace"))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(shown.stdout))
    return "\n".join(parts)


def _value(body: dict[str, object]) -> float | None:
    data = body.get("data")
    assert isinstance(data, dict), body
    result = data.get("result")
    if not result:
        return None
    return float(result[0]["value"][1])


def test_wait_draws_a_live_view_on_a_terminal_and_writes_the_github_summary(
    stack: Stack, worker: ManagedProcess, tmp_path: Path
) -> None:
    spec = stack.spec(
        [{"set_weight": 50}, {"pause": "2s"}, {"set_weight": 100}],
        interval="1s",
        metrics=[
            {
                "name": "smoke",
                "provider": "http",
                "url": f"{stack.canary_url}/healthz",
                "min_success_ratio": 1,
            }
        ],
    )
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    env = {**os.environ, **stack.server.env(), "GITHUB_STEP_SUMMARY": str(summary), "TERM": "xterm"}
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice", "start", "-f", str(spec), "--wait"],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env=env,
        cwd=ROOT,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO once the child has exited and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    screen = b"".join(chunks).decode()
    assert proc.wait(timeout=60) == 0, screen
    assert "\x1b[J" in screen  # redrawn in place
    assert "watching for" in screen and "PROMOTED" in screen and "trace id:" in screen

    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, never overwritten
    assert f"Sluice: {stack.service} v1 → v2: **promoted**" in text
    assert "| 1/3 | shift to 50% | done |" in text
    assert "| smoke | pass |" in text
    assert f"/workflows/rollout-{stack.service})" in text


def test_encrypted_payloads_keep_the_spec_out_of_the_history(stack: Stack, tmp_path: Path) -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    worker = start_worker(stack.server, tmp_path / "worker.log", {"SLUICE_CODEC_KEY": key})
    try:
        spec = stack.spec([{"set_weight": 30}, {"pause": {}}, {"set_weight": 100}])
        keyed = {"SLUICE_CODEC_KEY": key}
        done = stack.sluice("start", "-f", str(spec), env=keyed)
        assert done.returncode == 0, done.stderr
        wait_until(
            lambda: (
                '"phase": "paused"' in stack.sluice("status", stack.service, "-o", "json", env=keyed).stdout
            ),
            30,
            0.3,
            "paused (read through the codec)",
        )
        history = history_text(stack)
        assert base64.b64encode(b"binary/encrypted").decode() in history  # the payloads' encoding
        assert stack.haproxy.backend not in history  # the spec, status and details are ciphertext
        assert stack.service in history  # search attributes stay readable for the list and filters
        # Without the key the CLI cannot read the status; with it, it can.
        assert stack.sluice("status", stack.service).returncode != 0
        resumed = stack.sluice("resume", stack.service, "--reason", "ok", env=keyed)
        assert resumed.returncode == 0, resumed.stderr
        wait_until(
            lambda: (
                '"phase": "promoted"' in stack.sluice("status", stack.service, "-o", "json", env=keyed).stdout
            ),
            30,
            0.3,
            "promoted",
        )
    finally:
        worker.stop()
