"""Durations as a spec writes them (`500ms`, `1h30m`), parsed and printed back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sluice.contracts.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("PT30S", 30),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (0.5, 30, 90, 3600, 3725.5)] == [
        "500ms",
        "30s",
        "1m30s",
        "1h",
        "1h2m5.5s",
    ]


@pytest.mark.parametrize(
    "text", ["99999999999h", "1" * 21 + "s", "8761h", "PT99999999999H", "1" * 400 + "ms"]
)
def test_durations_are_bounded(text: str) -> None:
    with pytest.raises(ValueError, match=r"365 days|too long"):
        parse_duration(text)
    assert parse_duration("8760h") == timedelta(days=365)
