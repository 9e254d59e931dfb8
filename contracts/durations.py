"""Human durations (`500ms`, `30s`, `5m`, `1h`, `1h30m`) parsed to and printed from timedelta."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$")
# What pydantic's own JSON serialisation of a timedelta looks like ("PT30S"); accepted so
# that a spec that went through Temporal's pydantic data converter round-trips.
_ISO = re.compile(r"^P(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)$")

DURATION_HINT = "write a number and a unit: 500ms, 30s, 5m, 1h (or combined, 1h30m)"
LONGEST = timedelta(days=365)
"""The longest duration a spec may give: far past any bake or gate, well inside what timers hold."""


def _bounded(value: object, seconds: float) -> timedelta:
    if not math.isfinite(seconds) or seconds > LONGEST.total_seconds():
        raise ValueError(
            f"{value!r} is longer than {format_duration(LONGEST)} (365 days), the longest duration allowed"
        )
    return timedelta(seconds=seconds)


def parse_duration(value: object) -> timedelta:
    """Parse `500ms`, `30s`, `5m`, `1h` or a combination like `1m30s` into a timedelta.

    Raises ValueError with a hint for anything else, including bare numbers: a unit is
    required so that `pause: 30` can never silently mean 30 ms or 30 minutes. Durations longer
    than `LONGEST` are refused (a 21-digit number of seconds does not fit a timedelta).
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value} has no unit; write {value}s or {value}m ({DURATION_HINT})")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration string, got {type(value).__name__}; {DURATION_HINT}")
    text = value.strip()
    if len(text) > 64:
        raise ValueError(f"{value[:20]!r}... is too long for a duration; {DURATION_HINT}")
    if _WHOLE.fullmatch(text):
        return _bounded(value, sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text)))
    iso = _ISO.fullmatch(text)
    if iso and text not in ("P", "PT"):
        h, m, s = (float(g) if g else 0.0 for g in iso.groups())
        return _bounded(value, h * 3600 + m * 60 + s)
    raise ValueError(f"{value!r} is not a duration; {DURATION_HINT}")


def format_duration(value: timedelta) -> str:
    """Print a timedelta the way a spec writes it: `500ms`, `30s`, `5m`, `1h30m`, `1m2.5s`."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms % 1000:
        if total_ms < 1000:
            return f"{total_ms}ms"
        hours, rest = divmod(total_ms, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        head = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
        return f"{head}{rest / 1000:g}s"
    seconds = total_ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _WHOLE.pattern, "examples": ["30s", "5m"]}),
]
"""A timedelta written in specs (and serialised) as `30s`, `5m`, `500ms`, `1h`."""
