"""The one message cap and the one Markdown cell escape (contracts.text)."""

from __future__ import annotations

from sluice.contracts.text import MAX_MESSAGE, cap, markdown_cell


def test_cap_keeps_short_text_and_cuts_long_text_to_the_limit() -> None:
    assert cap("short") == "short"
    assert cap("x" * MAX_MESSAGE) == "x" * MAX_MESSAGE
    long = cap("x" * (MAX_MESSAGE + 50))
    assert len(long) == MAX_MESSAGE and long.endswith("…")
    assert cap("abcdef", 4) == "abc…"


def test_markdown_cell_escapes_pipes_and_joins_lines() -> None:
    assert markdown_cell("a|b\nc") == "a\\|b c"
