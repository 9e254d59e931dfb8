"""`sluice codec-server` as a real process on a free port, spoken to over HTTP as the Web UI does."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from sluice.runtime.codec import EncryptionCodec
from tests.support.procs import free_port
from tests.support.temporal import start_codec_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))
UI = "http://127.0.0.1:8233"
OTHER_UI = "https://temporal.example.com"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def as_json(payload: Payload) -> dict[str, Any]:
    return json_format.MessageToDict(payload)


PLAIN = [
    {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b'{"service": "checkout"}')},
    {"metadata": {"encoding": b64(b"binary/null")}},
    {"metadata": {"encoding": b64(b"binary/plain"), "x": b64(b"\x00\xff")}, "data": b64(bytes(range(256)))},
]


def env_with(key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_CODEC_KEY"}
    if key is not None:
        env["SLUICE_CODEC_KEY"] = key
    return env


@pytest.fixture(scope="module")
def codec_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("codec") / "codec-server.log"
    proc, url = start_codec_server(log, b64(KEY), [UI, OTHER_UI + "/"])
    try:
        yield url
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        proc.stop()


def test_encode_then_decode_round_trips_and_workers_can_read_it(codec_url: str) -> None:
    with httpx.Client(base_url=codec_url, timeout=10) as http:
        sealed = http.post("/encode", json={"payloads": PLAIN})
        assert sealed.status_code == 200, sealed.text
        assert sealed.headers["content-type"].startswith("application/json")
        encrypted = sealed.json()["payloads"]
        assert len(encrypted) == len(PLAIN)
        key_id = EncryptionCodec(KEY).key_id
        for p in encrypted:
            assert p["metadata"] == {
                "encoding": b64(b"binary/encrypted"),
                "encryption-key-id": b64(key_id.encode()),
            }
        assert b64(b'{"service": "checkout"}') not in sealed.text

        # Under any prefix, as the UI (endpoint + "/decode") and the CLI ({namespace}) call it.
        for path in ("/decode", "/default/decode", "/codec/default/decode/"):
            opened = http.post(path, json={"payloads": encrypted}, headers={"X-Namespace": "default"})
            assert opened.status_code == 200, (path, opened.text)
            assert opened.json() == {"payloads": PLAIN}

        # A payload written before encryption was on passes through decode unchanged.
        mixed = http.post("/decode", json={"payloads": [PLAIN[0], encrypted[1]]})
        assert mixed.json() == {"payloads": PLAIN[:2]}
        assert http.post("/decode", json={"payloads": []}).json() == {"payloads": []}

    # The worker's codec (the SDK path) opens what the server sealed.
    sealed_payload = json_format.ParseDict(encrypted[0], Payload())
    assert as_json(EncryptionCodec(KEY).decrypt(sealed_payload)) == PLAIN[0]


def test_cors_preflight_only_for_the_ui_origins(codec_url: str) -> None:
    asks = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    for origin in (UI, OTHER_UI):
        answer = httpx.options(f"{codec_url}/default/decode", headers={"Origin": origin, **asks})
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == origin
        assert "POST" in answer.headers["access-control-allow-methods"]
        allowed = {h.strip() for h in answer.headers["access-control-allow-headers"].split(",")}
        assert {"content-type", "x-namespace", "authorization"} <= allowed
        posted = httpx.post(f"{codec_url}/decode", json={"payloads": PLAIN}, headers={"Origin": origin})
        assert posted.status_code == 200 and posted.headers["access-control-allow-origin"] == origin

    # The default origins are replaced by --ui-origin; a page elsewhere gets no CORS grant,
    # and its POST (a "simple" request needs no preflight) is refused outright.
    for origin in ("http://localhost:8233", "http://evil.example"):
        refused = httpx.options(f"{codec_url}/decode", headers={"Origin": origin, **asks})
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        assert f"--ui-origin {origin}" in refused.text
        posted = httpx.post(
            f"{codec_url}/decode",
            content=b'{"payloads": []}',
            headers={"Origin": origin, "Content-Type": "text/plain"},
        )
        assert posted.status_code == 403 and "access-control-allow-origin" not in posted.headers


def test_bad_requests_get_a_message(codec_url: str) -> None:
    with httpx.Client(base_url=codec_url, timeout=10) as http:
        bad = http.post("/decode", content=b'{"payloads": [', headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and 'not {"payloads": [...]}' in bad.text

        other = EncryptionCodec(bytes(32))
        foreign = as_json(other.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b"1")))
        wrong_key = http.post("/decode", json={"payloads": [foreign]})
        assert wrong_key.status_code == 400
        assert other.key_id in wrong_key.text and EncryptionCodec(KEY).key_id in wrong_key.text

        sealed = http.post("/encode", json={"payloads": PLAIN[:1]}).json()["payloads"][0]
        data = bytearray(base64.b64decode(sealed["data"]))
        data[-1] ^= 1
        altered = http.post("/decode", json={"payloads": [{**sealed, "data": b64(bytes(data))}]})
        assert altered.status_code == 400 and "altered" in altered.text

        assert http.post("/status", json={"payloads": []}).status_code == 404
        assert http.get("/decode").status_code == 405


@pytest.mark.parametrize(("key", "message"), [(None, "is not set"), ("c2hvcnQ=", "must be 32 bytes")])
def test_no_usable_key_exits_2_before_listening(key: str | None, message: str) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "codec-server", "--port", str(port)],
        capture_output=True,
        text=True,
        env=env_with(key),
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("sluice codec-server: SLUICE_CODEC_KEY") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""
