"""Optional payload encryption: AES-256-GCM over every payload when `SLUICE_CODEC_KEY` is set.

Specs, statuses, signal inputs, memos and the UI's summary/details are then ciphertext in
Temporal's history; search attributes stay readable (the UI and `sluice list` filter on
them). The key is 32 bytes, base64-encoded (`openssl rand -base64 32`); the worker and every
CLI must share it. `sluice codec-server` (starter/codec_server.py) serves the same codec over
HTTP so the Temporal Web UI and `temporal workflow show --codec-endpoint` can show plaintext.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

KEY_ENV = "SLUICE_CODEC_KEY"
ENCODING = b"binary/encrypted"
"""The `encoding` metadata of an encrypted payload (the convention of Temporal's samples)."""


class CodecKeyError(ValueError):
    """`SLUICE_CODEC_KEY` is set but is not 32 base64-encoded bytes."""


def key_from_env() -> bytes | None:
    """The key from `SLUICE_CODEC_KEY`, None when unset; a malformed key raises `CodecKeyError`."""
    text = (os.environ.get(KEY_ENV) or "").strip()
    if not text:
        return None
    padded = text + "=" * (-len(text) % 4)
    try:  # standard or URL-safe base64
        key = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise CodecKeyError(f"{KEY_ENV} must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)")
    return key


class EncryptionCodec(PayloadCodec):
    """Encrypts each whole payload (metadata and data) with AES-256-GCM and a random nonce."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:12]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload sealed with this key (a new nonce each time)."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, "encryption-key-id": self.key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """One payload opened; unencrypted ones pass through.

        Raises ValueError naming the key ids when another key sealed it, or when it was altered.
        """
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was turned on: leave it readable
        key_id = payload.metadata.get("encryption-key-id", b"").decode(errors="replace")
        if key_id != self.key_id:
            raise ValueError(
                f"payload encrypted with key {key_id}, this process has key {self.key_id} ({KEY_ENV})"
            )
        try:
            plain = self._aead.decrypt(payload.data[:12], payload.data[12:], None)
        except InvalidTag:
            raise ValueError(
                f"payload with key {key_id} does not authenticate: altered or truncated"
            ) from None
        return Payload.FromString(plain)


def data_converter() -> DataConverter:
    """Sluice's converter (pydantic), with encryption when `SLUICE_CODEC_KEY` is set."""
    key = key_from_env()
    if key is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(key))
