"""`sluice report` on a real dev server over finished rollouts of every outcome the test drove.

One service runs, in order: a rollout rolled back by its analysis (the canary answers 500),
the same spec promoted once the canary is healthy (a possible false rollback), a rollout an
operator aborts while it waits at a `pause: {}` step, one cancelled through Temporal while it
waits there, and one that waits at an approval gate, is approved and promoted. Each figure of
the report is then checked against the statuses the test saw, and the HTML report is opened
in headless Chromium with the network cut off.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sluice.cli.report import percent, seconds
from tests.e2e.conftest import ROOT, Stack
from tests.e2e.test_rollouts import start, status, wait_status
from tests.e2e.test_web_ui import CHROMIUM, FLAGS, DevTools
from tests.support.load import LoadGenerator
from tests.support.procs import ManagedProcess, wait_until

pytestmark = pytest.mark.integration

REPORT_SCREENSHOT = ROOT / "docs" / "insights-report.png"
STORY_SCREENSHOT = ROOT / "docs" / "insights-rollout.png"
"""Refreshed only with SLUICE_SAVE_SCREENSHOT=1, so a test run leaves the work tree clean."""

ANALYSIS: dict[str, Any] = {
    "interval": "1s",
    "inconclusive_limit": 30,
    "metrics": [{"name": "canary-5xx", "provider": "haproxy", "max": 0.05, "min_requests": 5}],
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def reset_to_stable(stack: Stack) -> None:
    """After a promotion the new server has it all: put it back, as the next rollout starts there."""
    backend = stack.haproxy.backend
    stack.haproxy.command(f"set weight {backend}/{stack.haproxy.stable_server} 100")
    stack.haproxy.command(f"set weight {backend}/{stack.haproxy.canary_server} 0")


def report_json(stack: Stack, *args: str) -> dict[str, Any]:
    done = stack.sluice("report", *args, "--output", "json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def drive_rollouts(stack: Stack) -> dict[str, Any]:
    """Run the five rollouts; return what the test saw of each (final status, wall times)."""
    seen: dict[str, Any] = {}
    gated = stack.spec([{"set_weight": 20}, {"pause": "2s"}, {"set_weight": 100}], version="v2", **ANALYSIS)
    with LoadGenerator(stack.haproxy.url, rate=40):
        # 1. Rolled back by the analysis: every canary answer is a 500.
        stack.canary_errors(1.0)
        done = stack.sluice("start", "-f", str(gated), "--wait")
        assert done.returncode == 1, done.stdout + done.stderr
        seen["rolled_back"] = status(stack)
        # 2. The very same spec, now healthy: promoted (a possible false rollback before it).
        stack.canary_errors(0.0)
        done = stack.sluice("start", "-f", str(gated), "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        seen["promoted"] = status(stack)
        reset_to_stable(stack)

    # 3. Aborted by an operator while it waits at a `pause: {}` step.
    held = stack.spec([{"set_weight": 10}, {"pause": {}}, {"set_weight": 100}], version="v3")
    began = time.monotonic()
    start(stack, held)
    wait_status(stack, lambda s: s["phase"] == "paused")
    time.sleep(1.0)
    done = stack.sluice("abort", stack.service, "--reason", "wrong build", "--by", "alice")
    assert done.returncode == 0, done.stderr
    seen["aborted"] = wait_status(stack, lambda s: s["phase"] == "aborted")
    seen["aborted_wall"] = time.monotonic() - began

    # 4. Cancelled through Temporal while it waits there.
    held4 = stack.spec([{"set_weight": 10}, {"pause": {}}, {"set_weight": 100}], version="v4")
    began = time.monotonic()
    start(stack, held4)
    wait_status(stack, lambda s: s["phase"] == "paused")
    time.sleep(1.0)
    done = stack.temporal("workflow", "cancel", "--workflow-id", f"rollout-{stack.service}")
    assert done.returncode == 0, done.stderr
    seen["cancelled"] = wait_status(stack, lambda s: s["phase"] == "aborted")
    seen["cancelled_wall"] = time.monotonic() - began

    # 5. Waits at an approval gate, approved by bob, promoted.
    gate = stack.spec(
        [{"set_weight": 10}, {"approval": {"approvers": ["bob"], "timeout": "5m"}}, {"set_weight": 100}],
        version="v5",
    )
    began = time.monotonic()
    start(stack, gate)
    wait_status(stack, lambda s: s["phase"] == "awaiting_approval")
    time.sleep(1.5)
    done = stack.sluice("approve", stack.service, "--by", "bob", "--reason", "numbers look fine")
    assert done.returncode == 0, done.stderr
    seen["approved"] = wait_status(stack, lambda s: s["phase"] == "promoted")
    seen["approved_wall"] = time.monotonic() - began
    reset_to_stable(stack)
    return seen


def test_report_figures_match_what_the_rollouts_did(
    stack: Stack, worker: ManagedProcess, tmp_path: Path
) -> None:
    seen = drive_rollouts(stack)
    back, promoted, aborted = seen["rolled_back"], seen["promoted"], seen["aborted"]
    cancelled, approved = seen["cancelled"], seen["approved"]

    report = report_json(stack, "--service", stack.service, "--since", "1d")
    o = report["overall"]
    assert (o["rollouts"], o["finished"], o["running"], o["unknown"]) == (5, 5, 0, 0)
    assert (o["promoted"], o["rolled_back"], o["aborted"], o["failed"]) == (2, 1, 2, 0)
    assert o["change_failure_rate"] == pytest.approx(3 / 5)
    assert o["deployments_per_week"] == pytest.approx(2 / (1 / 7))
    assert o["rollback_causes"] == {"analysis": 1, "cancel": 1, "operator": 1}
    assert o["rollback_by"] == {"alice": 1, "temporal": 1}
    assert o["rollback_metrics"] == {"canary-5xx": 1}
    assert sum(o["rollback_reasons"].values()) == 3
    assert [s["service"] for s in report["services"]] == [stack.service]
    assert sum(w["started"] for w in report["weeks"]) == 5

    # Time to restore: the failing verdict (or the decision to stop) to the verified rollback.
    fail_at = min(at(v["at"]) for v in back["verdicts"] if v["verdict"] == "fail")
    expected_back = (at(back["rollback"]["verified_at"]) - fail_at).total_seconds()
    expected_abort = (
        at(aborted["rollback"]["verified_at"]) - at(aborted["rollback"]["started_at"])
    ).total_seconds()
    expected_cancel = (
        at(cancelled["rollback"]["verified_at"]) - at(cancelled["rollback"]["started_at"])
    ).total_seconds()
    by_outcome = {(f["outcome"], f["cause"]): f for f in report["rollouts"]}
    assert by_outcome["rolled_back", "analysis"]["restore_seconds"] == pytest.approx(expected_back, abs=1e-3)
    assert by_outcome["aborted", "operator"]["restore_seconds"] == pytest.approx(expected_abort, abs=1e-3)
    # A cancelled run has no result: its figures come from its history's event times.
    assert by_outcome["aborted", "cancel"]["restore_seconds"] == pytest.approx(expected_cancel, abs=0.3)
    restores = sorted([expected_back, expected_abort, expected_cancel])
    assert o["time_to_restore"]["count"] == 3
    assert o["time_to_restore"]["median_s"] == pytest.approx(restores[1], abs=0.3)
    assert o["time_to_restore"]["p90_s"] == pytest.approx(restores[2], abs=0.3)

    promotions = sorted(
        (at(s["finished_at"]) - at(s["started_at"])).total_seconds() for s in (promoted, approved)
    )
    assert o["time_to_promotion"]["count"] == 2
    assert o["time_to_promotion"]["median_s"] == pytest.approx(sum(promotions) / 2, abs=1e-3)
    assert o["time_to_promotion"]["p90_s"] == pytest.approx(promotions[1], abs=1e-3)

    # Paused (the `pause: {}` steps) and awaiting approval: at least what the test slept,
    # at most the wall time around each rollout.
    assert o["paused"]["count"] == 2
    assert 2.0 <= o["paused_total_s"] <= seen["aborted_wall"] + seen["cancelled_wall"]
    assert o["awaiting_approval"]["count"] == 1
    assert 1.5 <= o["awaiting_approval_total_s"] <= seen["approved_wall"]

    # The same version and spec rolled back, then promoted: flagged.
    [flagged] = report["suspicious"]
    assert (flagged["version"], flagged["spec_digest"]) == ("v2", back["spec_digest"])
    assert flagged["metrics"] == ["canary-5xx"] and flagged["cause"] == "analysis"

    # One rollout explained: the rolled-back run, from its history.
    listed = json.loads(stack.sluice("list", "--service", stack.service, "--output", "json").stdout)
    first_run = listed[-1]["run_id"]
    story = report_json(stack, "--rollout", stack.service, "--run-id", first_run)
    assert story["status"]["phase"] == "rolled_back"
    weights = [(w["source"], w["canary"]) for w in story["timeline"]["weights"]]
    assert weights == [("preflight", 0), ("set_traffic", 20), ("rollback", 0)]
    ticks = story["timeline"]["ticks"]
    assert ticks and ticks[-1]["verdicts"][0]["verdict"] == "fail"
    assert ticks[-1]["verdicts"][0]["bound"] == back["verdicts"][0]["bound"]
    assert story["facts"]["restore_seconds"] == pytest.approx(expected_back, abs=1e-3)
    assert story["decision"].startswith("rolled_back: analysis failed (canary-5xx")
    kinds = [e["kind"] for e in story["events"]]
    assert kinds[-1] == "decision" and "tick" in kinds and "weights" in kinds

    latest = report_json(stack, "--rollout", stack.service)
    assert latest["status"]["version"] == "v5"
    assert [a["action"] for a in latest["status"]["actions"]] == ["approve"]
    assert [p["phase"] for p in latest["timeline"]["phases"]][:3] == [
        "progressing",
        "awaiting_approval",
        "progressing",
    ]

    # Text and Markdown carry the same figures.
    text = stack.sluice("report", "--service", stack.service, "--since", "1d")
    assert text.returncode == 0, text.stderr
    assert percent(o["change_failure_rate"]) in text.stdout and "Possible false rollbacks" in text.stdout
    markdown = stack.sluice("report", "--service", stack.service, "--since", "1d", "--format", "markdown")
    assert markdown.returncode == 0 and "| **all** | 5 | 2 | 1 | 2 | 0 | 0 | 60.0% |" in markdown.stdout

    # The HTML report: one file, no network, plots rendered, figures as in the JSON.
    page = tmp_path / "report.html"
    done = stack.sluice("report", "--service", stack.service, "--since", "1d", "--html", str(page))
    assert done.returncode == 0, done.stderr
    story_page = tmp_path / "story.html"
    done = stack.sluice("report", "--rollout", stack.service, "--run-id", first_run, "--format", "html")
    assert done.returncode == 0, done.stderr
    story_page.write_text(done.stdout)
    for file in (page, story_page):  # no URL but the SVG and XLink namespace names
        urls = set(re.findall(r"https?://[^\"'\s<>)]+", file.read_text()))
        assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    save = bool(os.environ.get("SLUICE_SAVE_SCREENSHOT"))
    shown = asyncio.run(open_offline(page, REPORT_SCREENSHOT if save else tmp_path / "report.png"))
    data = shown["data"]
    assert shown["plots"] == ["weekly", "outcomes", "time_to_restore", "causes"]
    assert all(n > 10 for n in shown["shapes"]), shown["shapes"]  # each SVG drew paths
    assert all(w > 300 for w in shown["widths"]), shown["widths"]  # and is laid out
    assert shown["requests"] == [], shown["requests"]  # nothing fetched but the file itself
    cards = shown["cards"]
    d = data["overall"]
    assert cards["rollouts"] == str(d["rollouts"]) == "5"
    assert cards["change_failure_rate"] == percent(d["change_failure_rate"]) == "60.0%"
    assert cards["time_to_restore.median_s"] == seconds(d["time_to_restore"]["median_s"])
    assert cards["time_to_restore.p90_s"] == seconds(d["time_to_restore"]["p90_s"])
    assert cards["deployments_per_week"] == f"{d['deployments_per_week']:.2f}"
    assert d == o  # the same figures as --output json
    assert shown["suspicious_rows"] == 1 and shown["outcome_rows"] == 5

    told = asyncio.run(open_offline(story_page, STORY_SCREENSHOT if save else tmp_path / "story.png"))
    assert told["plots"] == ["story"] and told["shapes"][0] > 10 and told["requests"] == []
    assert told["cards"]["outcome"] == "rolled_back"
    assert told["cards"]["restore_seconds"] == seconds(story["facts"]["restore_seconds"])


PROBE = """
(() => {
  const figures = [...document.querySelectorAll('figure[data-plot]')];
  const cards = {};
  for (const el of document.querySelectorAll('[data-figure]')) {
    const b = el.querySelector('b'); cards[el.dataset.figure] = (b ? b.innerText : el.innerText).trim();
  }
  return JSON.stringify({
    plots: figures.map(f => f.dataset.plot),
    shapes: figures.map(f => f.querySelectorAll('svg path, svg use').length),
    widths: figures.map(f => f.querySelector('svg').getBoundingClientRect().width),
    cards,
    data: JSON.parse(document.getElementById('sluice-report').textContent),
    suspicious_rows: document.querySelectorAll('tr[data-suspicious]').length,
    outcome_rows: document.querySelectorAll('tr[data-outcome]').length,
  });
})()
"""


async def open_offline(page: Path, screenshot: Path) -> dict[str, Any]:
    """Open `page` in headless Chromium with every network request refused; probe it; screenshot it."""
    import websockets

    assert CHROMIUM is not None
    offline = [
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(  # noqa: ASYNC220 (started once, stopped by PID below)
            [CHROMIUM, *FLAGS, *offline, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            wait_until(
                lambda: port_file.exists() and port_file.read_text().strip() != "", 30, 0.1, "DevTools"
            )
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:  # noqa: ASYNC210
                target = next(t for t in json.loads(resp.read()) if t["type"] == "page")
            async with websockets.connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
                tools = RecordingDevTools(ws)
                await tools.call("Network.enable")
                await tools.call("Page.enable")
                await tools.call("Page.navigate", url=page.as_uri())
                result: dict[str, Any] = {}
                for _ in range(100):
                    state = await tools.call("Runtime.evaluate", expression="document.readyState")
                    if state["result"]["value"] == "complete":
                        answer = await tools.call("Runtime.evaluate", expression=PROBE)
                        result = json.loads(answer["result"]["value"])
                        break
                    await asyncio.sleep(0.1)
                shot = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                screenshot.parent.mkdir(exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                result["requests"] = [u for u in tools.requested if not u.startswith(("file:", "data:"))]
                return result
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class RecordingDevTools(DevTools):
    """`DevTools` that also notes every URL the page requests (from `Network.requestWillBeSent`)."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.requested: list[str] = []
        self._ws_raw = ws

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws_raw.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self._ws_raw.recv())
            if message.get("method") == "Network.requestWillBeSent":
                self.requested.append(message["params"]["request"]["url"])
            if message.get("id") == call_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result
