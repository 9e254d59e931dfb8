"""The Web UI decrypting an encrypted rollout through `sluice codec-server`, in headless Chromium.

This module runs its own dev server, started with `--ui-codec-endpoint` pointing at a codec
server, and its own worker with `SLUICE_CODEC_KEY`; the `stack` fixture picks both up.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.contracts.plan import static_summary
from sluice.contracts.spec import load_spec
from tests.e2e.conftest import Stack
from tests.e2e.test_observability import history_text
from tests.e2e.test_web_ui import CHROMIUM, page_texts_and_screenshot
from tests.support.procs import ManagedProcess, free_port, wait_until
from tests.support.temporal import DevServer, start_codec_server, start_dev_server, start_worker

pytestmark = pytest.mark.integration

KEY = base64.b64encode(bytes(range(32, 64))).decode()
KEYED = {"SLUICE_CODEC_KEY": KEY}


@pytest.fixture(scope="module")
def ui_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def codec_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("codec") / "codec-server.log"


@pytest.fixture(scope="module")
def codec_url(codec_log: Path, ui_port: int) -> Iterator[str]:
    # The UI is not on the default 8233 here: allow its origin by name, as a user would.
    proc, url = start_codec_server(codec_log, KEY, [f"http://127.0.0.1:{ui_port}"])
    yield url
    proc.stop()
    assert "Traceback" not in codec_log.read_text()


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory, ui_port: int, codec_url: str) -> Iterator[DevServer]:
    """Overrides the session's dev server for this module: this one's UI decodes with the codec server."""
    server = start_dev_server(
        tmp_path_factory.mktemp("temporal-codec"), ui_port=ui_port, ui_codec_endpoint=codec_url
    )
    yield server
    server.stop()


@pytest.fixture
def encrypting_worker(dev_server: DevServer, tmp_path: Path) -> Iterator[ManagedProcess]:
    proc = start_worker(dev_server, tmp_path / "worker.log", KEYED)
    yield proc
    proc.stop()


def status(stack: Stack) -> dict[str, object]:
    shown = stack.sluice("status", stack.service, "-o", "json", env=KEYED)
    return json.loads(shown.stdout) if shown.returncode == 0 else {}


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run does)"
)
async def test_web_ui_shows_encrypted_rollout_decrypted_by_the_codec_server(
    stack: Stack, encrypting_worker: ManagedProcess, codec_url: str, codec_log: Path, tmp_path: Path
) -> None:
    spec = stack.spec([{"set_weight": 25}, {"pause": {}}, {"set_weight": 100}])
    started = stack.sluice("start", "-f", str(spec), env=KEYED)
    assert started.returncode == 0, started.stderr
    wait_until(lambda: status(stack).get("phase") == "paused", 60, 0.3, "paused (read through the codec)")
    try:
        # Control: the history itself is ciphertext; the Temporal CLI reads it through the codec server.
        assert stack.haproxy.backend not in history_text(stack)
        assert stack.haproxy.backend in history_text(stack, "--codec-endpoint", codec_url)

        summary = static_summary(load_spec(spec.read_text()))
        url = f"{stack.server.ui_url}/namespaces/default/workflows/rollout-{stack.service}"
        (metadata,) = await page_texts_and_screenshot(
            url, [("User Metadata", [summary, "Current Details", "step 2: waiting for"])], tmp_path / "ui.png"
        )
        assert summary in metadata, metadata[-3000:]  # the static summary, decrypted
        assert "paused step 2: waiting for sluice resume or sluice promote" in metadata, metadata[-2000:]
        assert "weights: stable 75% · new 25%" in metadata
        # The browser asked first (CORS preflight), then posted the payloads (UI 2.54 adds a query).
        requests = codec_log.read_text()
        assert re.search(r'"OPTIONS /decode\S* HTTP/1.1" 204', requests), requests[-2000:]
    finally:
        stack.sluice("abort", stack.service, "--reason", "test over", env=KEYED)
