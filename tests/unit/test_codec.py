"""`runtime/codec.py`: payload encryption round trip and key mismatch."""

from __future__ import annotations

import asyncio
import base64

import pytest

from sluice.runtime import codec


def test_codec_round_trip_and_wrong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = bytes(range(32))
    monkeypatch.setenv(codec.KEY_ENV, base64.urlsafe_b64encode(key).decode().rstrip("="))
    assert codec.key_from_env() == key
    converter = codec.data_converter()
    payloads = asyncio.run(converter.encode(["spec", {"a": 1}]))
    assert all(p.metadata["encoding"] == codec.ENCODING for p in payloads)
    assert b"spec" not in payloads[0].data
    assert asyncio.run(converter.decode(payloads, [str, dict])) == ["spec", {"a": 1}]
    other = codec.EncryptionCodec(bytes(32))
    with pytest.raises(ValueError, match="encrypted with key"):
        asyncio.run(other.decode(payloads))
    monkeypatch.setenv(codec.KEY_ENV, "c2hvcnQ=")
    with pytest.raises(codec.CodecKeyError):
        codec.key_from_env()
