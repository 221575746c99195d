"""Durations as people write them, parsed and formatted in one place.

``parse_duration`` reads the short form every setting uses (``250ms``, ``30s``, ``5m``, ``1h``,
``7d`` or a number of seconds: the catalogue, schedules, unique windows, CLI options);
``parse_ago`` also reads Kafka's ISO 8601 form (``PT2H``) that ``kafka-consumer-groups``
users know; ``format_duration`` writes the shortest exact short form (topic names use it).
"""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_ago", "parse_duration"]

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_ISO_DURATION = re.compile(r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
                           r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``"250ms"``, ``"1s"``, ``"1.5s"``, ``"5m"``, ``"1h"``, ``"7d"`` or a number
    of seconds. Raises ValueError naming the bad text."""
    if isinstance(value, bool):  # bool is an int; True seconds is surely a mistake
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(f"invalid duration {value!r} (use e.g. 250ms, 30s, 5m, 1h, 7d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"invalid duration {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r} (must be a finite number >= 0)")
    return seconds


def parse_ago(text: str) -> float:
    """Seconds from ``2h``, ``30m``, ``1d`` or Kafka's ISO 8601 form ``PT2H``, ``P1DT30M``."""
    m = _ISO_DURATION.match(text.strip().upper())
    if m and any(m.groupdict().values()):
        g = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
        return g["d"] * 86400 + g["h"] * 3600 + g["m"] * 60 + g["s"]
    return parse_duration(text)


def format_duration(seconds: float) -> str:
    """Shortest exact text for ``seconds``: 1 -> "1s", 300 -> "5m", 3600 -> "1h",
    0.5 -> "500ms", 90 -> "90s". Used in topic names, so the result matches ``[0-9a-z]+``."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"invalid duration {seconds!r}")
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    if s and s % 3600 == 0:
        return f"{s // 3600}h"
    if s and s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"
