"""Where the CLI writes: results on stdout, and with `--output json` only JSON there."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class Console:
    """Human lines go to stdout, or to stderr when stdout is reserved for JSON."""

    def __init__(self, json_output: bool) -> None:
        self.json_output = json_output

    def say(self, *lines: str) -> None:
        stream = sys.stderr if self.json_output else sys.stdout
        for line in lines:
            print(line, file=stream, flush=True)

    def progress(self, line: str) -> None:
        """A timestamped progress line (local time, as a person watching would read it)."""
        self.say(f"{datetime.now().strftime('%H:%M:%S')}  {line}")

    def warn(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def data(self, value: Any) -> None:
        """Print one JSON document on stdout (pydantic models in their JSON form)."""
        if isinstance(value, BaseModel):
            text = value.model_dump_json(indent=2)
        else:
            text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
        print(text, flush=True)
