"""Shared test settings: where the venv's Temporal binaries are."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def venv_binary(name: str) -> str:
    """A binary installed by pip next to the interpreter (temporal, temporal-test-server, moto_server)."""
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run `pip install -e '.[dev]'` (see .ci/run)")
    return found
