"""
Byte counts, rates and durations as people read them, and byte counts as people type them.

One convention everywhere pcpkit prints (the command, progress lines, the daemon's pages,
message text): decimal SI units, ``"950 B"``, ``"1.2 MB"``, ``"3.4 GB"``, ``"1.2 MB/s"``.
Input (:func:`parseBytes`) takes the same decimal units (``"500kB"``, ``"4MB"``) and the
binary ones (``"256KiB"``, ``"4MiB"``); a bare ``K``/``M``/``G`` means the binary unit,
the usual meaning of ``--piece-size 256K``.
"""

from __future__ import annotations

import re

__all__ = ["formatBytes", "formatDuration", "formatRate", "parseBytes", "printable"]

# C0 and C1 controls (escape sequences, carriage returns, line breaks) and the
# bidirectional overrides that reorder what a terminal shows
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """
    ``text`` safe to write to a terminal on one line: control characters and bidirectional
    overrides are shown escaped (``\\x1b``, ``\\u202e``). For text that comes from
    elsewhere (a torrent's name, a tracker's message), which could otherwise move the
    cursor, rewrite the screen or start a new line.
    """
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


_DECIMAL = {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
_BINARY = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def formatBytes(n: float) -> str:
    """A byte count with decimal units: ``"950 B"``, ``"1.2 MB"``, ``"3.4 GB"``."""
    value = float(n)
    if abs(value) < 1000:
        return f"{int(value)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000.0
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def formatRate(bytesPerSecond: float) -> str:
    """A transfer rate: ``"1.2 MB/s"``."""
    return formatBytes(bytesPerSecond) + "/s"


def formatDuration(seconds: float | None) -> str:
    """``"42s"``, ``"3m05s"``, ``"1h02m"``; ``"--"`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds > 360000:
        return "--"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def parseBytes(text: str) -> int:
    """
    ``"262144"``, ``"256K"``/``"256KiB"`` (262144), ``"500kB"`` (500000), ``"4M"``,
    ``"1GB"`` -> bytes.

    :raises ValueError: not a byte count; the message shows the accepted forms.
    """
    raw = text.strip().replace(" ", "")
    number = raw.rstrip("kKmMgGtTiIbB")
    unit = raw[len(number) :].upper()
    if unit.endswith("IB"):
        scale = _BINARY.get(unit[:-2])
    elif unit in ("", "B"):
        scale = 1
    else:
        scale = _DECIMAL.get(unit) or _BINARY.get(unit)
    try:
        value = float(number) if "." in number else int(number)
    except ValueError:
        scale = None
    if scale is None or not number:
        raise ValueError(f"{text!r} is not a byte count (like 262144, 256K, 256KiB or 4MB)")
    return int(value * scale)
