"""
A small progress display for the ``pcpkit`` command and the demo.

On a terminal it redraws one line in place (``\\r``): a bar, the percentage, the amount
done, the rate and the time left. Anywhere else (a pipe, a log file, a twistd log) it
writes a plain line now and then, so output stays readable and bounded.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from pcpkit._format import formatBytes, formatDuration, formatRate, printable

__all__ = ["Progress", "formatDuration"]


class Progress:
    """
    Progress of one long task of ``total`` units (bytes).

    :param label: what is being done, shown first (``"downloading f.bin"``).
    :param total: the units to do; ``0`` when unknown (no bar, no time left).
    :param stream: where a terminal bar is drawn and plain lines go (``sys.stdout``).
    :param tty: draw a bar in place (default: whether ``stream`` is a terminal).
    :param interval: seconds between two plain lines when not drawing a bar.
    :param write: where plain lines go instead of ``stream`` (one call per line, no
        newline), e.g. a logger.
    :param clock: the time source (``time.monotonic``).
    """

    #: seconds between two redraws of a terminal bar
    redrawInterval = 0.1

    def __init__(
        self,
        label: str,
        total: int = 0,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float = 2.0,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = max(0, int(total))
        self.stream = stream if stream is not None else sys.stdout
        if tty is None:
            try:
                tty = write is None and self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.interval = interval
        self._write = write
        self._clock = clock
        self.started = clock()
        self.done = 0
        self.rate = 0.0
        self._lastSample: tuple[float, int] = (self.started, 0)
        # a bar shows at once; plain lines only for work that lasts
        self._lastShown = float("-inf") if self.tty else self.started
        self._width = 0
        self.finished = False

    # -- feeding ---------------------------------------------------------------------------

    def update(
        self, done: int, rate: float | None = None, extra: str = "", *, urgent: bool = False
    ) -> None:
        """
        ``done`` units are done now; ``rate`` (units/s) when the caller knows it, else it is
        measured; ``extra`` is appended to the line (peers, ...). ``urgent`` shows the line at
        once, whatever the interval (news the reader must see: an error).
        """
        if self.finished:
            return
        now = self._clock()
        done = int(done)
        if rate is None:
            t0, d0 = self._lastSample
            if now - t0 >= 0.25:
                sample = (done - d0) / (now - t0)
                # a light exponential average: steady, yet quick to follow a change
                self.rate = sample if self.rate == 0 else 0.5 * self.rate + 0.5 * sample
                self._lastSample = (now, done)
        else:
            self.rate = float(rate)
        self.done = done
        every = self.redrawInterval if self.tty else self.interval
        if now - self._lastShown >= every or urgent:
            self._lastShown = now
            self._show(self.line(extra))

    def finish(self, message: str | None = None) -> None:
        """End the display: the bar's line is closed and ``message`` (if any) written."""
        if self.finished:
            return
        self.finished = True
        if self.tty and self._width:
            self._clear()
        if message:
            self._emit(message)

    # -- rendering -------------------------------------------------------------------------

    def eta(self) -> float | None:
        """Seconds left at the current rate, ``None`` when unknown."""
        if not self.total or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def line(self, extra: str = "") -> str:
        """The current progress as one line of text (without the bar on a non-terminal)."""
        parts = []
        if self.total:
            fraction = min(1.0, self.done / self.total)
            parts.append(f"{fraction * 100:5.1f}%")
            parts.append(f"{formatBytes(self.done)} of {formatBytes(self.total)}")
        else:
            parts.append(formatBytes(self.done))
        parts.append(formatRate(self.rate))
        if self.total:
            parts.append(f"ETA {formatDuration(self.eta())}")
        if extra:
            parts.append(extra)
        text = "  ".join(parts)
        if self.tty and self.total:
            columns = shutil.get_terminal_size((80, 24)).columns
            # a fixed budget for the numbers, so the bar keeps its width as they change
            barWidth = max(0, min(30, columns - len(self.label) - 64))
            if barWidth >= 5:
                filled = int(barWidth * min(1.0, self.done / self.total))
                bar = "#" * filled + "-" * (barWidth - filled)
                return f"{self.label} [{bar}] {text}"
        return f"{self.label}: {text}"

    def _show(self, text: str) -> None:
        text = printable(text)  # (its label and extra come from torrents and trackers)
        if self.tty:
            columns = shutil.get_terminal_size((80, 24)).columns
            text = text[: max(10, columns - 1)]
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self.stream.flush()
            self._width = len(text)
        else:
            self._emit(text)

    def _clear(self) -> None:
        self.stream.write("\r" + " " * self._width + "\r")
        self.stream.flush()
        self._width = 0

    def _emit(self, text: str) -> None:
        text = printable(text)
        if self._write is not None:
            self._write(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()
