"""Human durations ("7d", "12h", "90m", "30s") and millisecond clocks."""

from __future__ import annotations

import re
import time

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw]?)\s*$")


class DurationError(ValueError):
    pass


def parse_duration(value: str | int | float) -> float:
    """Seconds in a duration such as "7d"; a bare number means seconds."""
    if isinstance(value, bool):
        raise DurationError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise DurationError("a duration cannot be negative")
        return float(value)
    match = _DURATION.match(str(value).lower())
    if not match:
        raise DurationError(f"not a duration: {value!r} (use e.g. 30m, 12h, 7d, 2w)")
    return float(int(match.group(1)) * _UNITS[match.group(2) or "s"])


def format_duration(seconds: float) -> str:
    """The largest whole unit that fits: 90061 -> "1d 1h"."""
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def now_ms() -> int:
    return int(time.time() * 1000)
