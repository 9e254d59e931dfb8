"""Every error type code the product raises is listed in contracts/errors.py."""

from __future__ import annotations

import re
from pathlib import Path

from sluice.contracts import errors

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ["activities", "workflows", "contracts", "starter", "runtime", "worker.py"]

# `type="RollbackFailed"` or `type=errors.ROUTER_CONFIG`, as an ApplicationError takes it.
_RAISED = re.compile(r"\btype=(?:\"([A-Z][A-Za-z]+)\"|errors\.([A-Z_]+)\b)")


def listed() -> dict[str, str]:
    """NAME -> code of every code in contracts/errors.py."""
    return {k: v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)}


def raised() -> list[tuple[str, str, str]]:
    """(file, literal code or '', errors.NAME or '') for every `type=` in the product code."""
    found = []
    for entry in PRODUCT:
        path = ROOT / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for literal, name in _RAISED.findall(file.read_text()):
                found.append((str(file.relative_to(ROOT)), literal, name))
    return found


def test_the_scan_finds_the_codes_it_should() -> None:
    names = {name for _, _, name in raised()}
    assert {"ROUTER_CONFIG", "TRAFFIC_NOT_APPLIED", "NOT_AN_APPROVER"} <= names


def test_every_raised_code_is_listed() -> None:
    codes = listed()
    unlisted = [
        (file, literal or name)
        for file, literal, name in raised()
        if (literal and literal not in codes.values()) or (name and name not in codes)
    ]
    assert unlisted == []


def test_codes_are_unique() -> None:
    values = list(listed().values())
    assert len(values) == len(set(values))
