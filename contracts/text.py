"""Text in Temporal payloads, Markdown and the CLI: one length cap, one cell escape, one time format."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

MAX_MESSAGE: Final = 300
"""Error messages and verdict details travel in Temporal payloads and the Web UI: cut to this."""


def cap(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` if it fits in `limit` characters, else its start and `…`, `limit` characters in all."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_cell(text: str) -> str:
    """`text` safe inside one cell of a Markdown table: pipes escaped, newlines as spaces."""
    return text.replace("|", "\\|").replace("\n", " ")


def utc_time(at: datetime | None) -> str:
    """An absolute time in UTC to the second (`2026-12-03 14:05:09 UTC`), `-` for none; naive is UTC."""
    if at is None:
        return "-"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
