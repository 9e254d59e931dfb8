"""The Temporal Web UI of the dev server, in headless Chromium, on a running rollout's page.

Chromium is driven over the Chrome DevTools protocol (a websocket): navigate, wait until the
single-page app has rendered the rollout, read the page's text, save a screenshot for the
README (docs/web-ui-rollout.png).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sluice.contracts.plan import static_summary
from sluice.contracts.spec import load_spec
from tests.e2e.conftest import ROOT, Stack
from tests.e2e.test_rollouts import start, wait_status
from tests.support.procs import ManagedProcess, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,1500",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
]
README_SCREENSHOT = ROOT / "docs" / "web-ui-rollout.png"
"""Refreshed only with SLUICE_SAVE_SCREENSHOT=1, so a test run leaves the work tree clean."""
# The workflow page (UI 2.x) shows "User Metadata" (summary, details, current details) and
# "Search Attributes" as tabs: click one as a person would.
CLICK_TAB = """
(() => { for (const el of document.querySelectorAll('a, button, [role=tab]')) {
  if ((el.innerText || '').trim() === LABEL) { el.click(); return true; } } return false; })()
"""


class DevTools:
    """Just enough of the Chrome DevTools protocol: send a command, wait for its answer."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self._ws.recv())
            if message.get("id") == call_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def text(self) -> str:
        """Every text node of the page, iframes included (the UI renders Markdown in iframes)."""
        root = (await self.call("DOM.getDocument", depth=-1, pierce=True))["root"]
        parts: list[str] = []

        def walk(node: dict[str, Any]) -> None:
            if node.get("nodeType") == 3 and node.get("nodeValue", "").strip():
                parts.append(node["nodeValue"].strip())
            if node.get("nodeName") in ("SCRIPT", "STYLE"):
                return
            for child in [*node.get("children", []), *filter(None, [node.get("contentDocument")])]:
                walk(child)

        walk(root)
        return " ".join(" ".join(parts).split())


async def _open_tab(tools: DevTools, label: str, wanted: list[str]) -> str:
    """Click the tab named `label` (retrying while the app loads) until `wanted` all show."""
    deadline = time.monotonic() + 45
    text = ""
    while time.monotonic() < deadline:
        await tools.call("Runtime.evaluate", expression=CLICK_TAB.replace("LABEL", json.dumps(label)))
        text = await tools.text()
        if all(w in text for w in wanted):
            break
        await asyncio.sleep(0.5)
    return text


async def page_texts_and_screenshot(
    url: str, tabs: list[tuple[str, list[str]]], screenshot: Path
) -> list[str]:
    """The page's text with each tab open in turn; a screenshot with the first one open."""
    import websockets

    assert CHROMIUM is not None
    # Chromium's helper processes can still be writing the profile as it exits.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(  # noqa: ASYNC220 (started once, stopped by PID below)
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped with all its helpers
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            wait_until(
                lambda: port_file.exists() and port_file.read_text().strip() != "", 30, 0.1, "DevTools"
            )
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:  # noqa: ASYNC210
                page = next(t for t in json.loads(resp.read()) if t["type"] == "page")
            async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
                tools = DevTools(ws)
                await tools.call("Page.enable")
                await tools.call("Page.navigate", url=url)
                texts = []
                for tab, wanted in tabs:
                    texts.append(await _open_tab(tools, tab, wanted))
                    if tab == tabs[0][0]:
                        await asyncio.sleep(1)  # let late panels settle for the picture
                        shot = await tools.call("Page.captureScreenshot", format="png")
                        screenshot.parent.mkdir(exist_ok=True)
                        screenshot.write_bytes(base64.b64decode(shot["data"]))
                return texts
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run does)"
)
async def test_rollout_page_shows_summary_current_details_and_search_attributes(
    stack: Stack, worker: ManagedProcess, tmp_path: Path
) -> None:
    screenshot = README_SCREENSHOT if os.environ.get("SLUICE_SAVE_SCREENSHOT") else tmp_path / "ui.png"
    spec = stack.spec([{"set_weight": 25}, {"pause": {}}, {"set_weight": 100}])
    start(stack, spec)
    wait_status(stack, lambda s: s["phase"] == "paused" and (s.get("weights") or {}).get("canary") == 25)
    url = f"{stack.server.ui_url}/namespaces/default/workflows/rollout-{stack.service}"
    summary = static_summary(load_spec(spec.read_text()))
    metadata, attributes = await page_texts_and_screenshot(
        url,
        [
            ("User Metadata", [summary, "Current Details", "step 2: waiting for"]),
            ("Search Attributes", ["SluicePhase"]),
        ],
        screenshot,
    )
    try:
        assert summary in metadata, metadata[-3000:]  # the static summary
        assert "Current Details" in metadata  # the live Markdown, rendered
        assert "paused step 2: waiting for sluice resume or sluice promote" in metadata, metadata[-2000:]
        assert "weights: stable 75% · new 25%" in metadata
        assert "SluicePhase" in attributes and "paused" in attributes, attributes[-3000:]
        assert "SluiceWeight" in attributes and "SluiceService" in attributes and stack.service in attributes
        assert screenshot.stat().st_size > 10_000
    finally:
        stack.sluice("abort", stack.service, "--reason", "test over")
