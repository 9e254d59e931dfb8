"""Finding a binary pip installed next to this Python, else on PATH (runtime.binaries)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sluice.runtime.binaries import find_binary


def test_a_binary_beside_python_comes_first() -> None:
    name = Path(sys.executable).name
    assert find_binary(name) == str(Path(sys.executable).parent / name)


def test_falls_back_to_path_and_to_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "sluice-test-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_binary("sluice-test-tool") == str(tool)
    assert find_binary("sluice-no-such-tool") is None
