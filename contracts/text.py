"""Text that travels in Temporal payloads and Markdown: one length cap, one table-cell escape."""

from __future__ import annotations

from typing import Final

MAX_MESSAGE: Final = 300
"""Error messages and verdict details travel in Temporal payloads and the Web UI: cut to this."""


def cap(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` if it fits in `limit` characters, else its start and `…`, `limit` characters in all."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_cell(text: str) -> str:
    """`text` safe inside one cell of a Markdown table: pipes escaped, newlines as spaces."""
    return text.replace("|", "\\|").replace("\n", " ")
