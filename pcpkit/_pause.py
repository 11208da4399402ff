"""
The one pausing mechanism of pcpkit: counted pauses and high/low watermarks.

Every part that pauses a producer (the byte proxies, the box bridges, the TCP adapter, the
relay, the torrent stream, the fan-out) goes through these two small classes, so that
back-pressure behaves the same everywhere:

* :class:`Pauser` turns any number of independent pauses of one producer into exactly one
  ``pause`` call (on the first) and one ``resume`` call (when the last is released). Each
  pause is an object (:class:`Pause`) that is released once, in the spirit of tubes'
  ``Pauser``: two parties that paused a producer can never resume each other's pause.
* :class:`Watermark` is the hysteresis: it takes one :class:`Pause` from a :class:`Pauser`
  when a level reaches the high watermark, and releases it when the level has drained to the
  low one, so a producer is never flapped on every write.

These are internal but shared: pcpkit modules import them from here; users see their effect
as ``pauseProducing`` / ``resumeProducing`` calls.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["AlreadyUnpaused", "Pause", "Pauser", "Watermark"]


class AlreadyUnpaused(RuntimeError):
    """A :class:`Pause` was released twice: a bug in whoever holds it."""


class Pause:
    """One party's pause of a producer; :meth:`unpause` releases it, once."""

    __slots__ = ("_pauser", "reason")

    def __init__(self, pauser: Pauser, reason: object = None) -> None:
        self._pauser: Pauser | None = pauser
        #: Who or what paused (for introspection and error messages); free-form.
        self.reason = reason

    def __repr__(self) -> str:
        state = "held" if self._pauser is not None else "released"
        return f"<Pause {state} by {self.reason!r}>"

    @property
    def held(self) -> bool:
        """Whether this pause has not been released yet."""
        return self._pauser is not None

    def unpause(self) -> None:
        """Release this pause; the producer resumes when no other pause is held."""
        pauser = self._pauser
        if pauser is None:
            raise AlreadyUnpaused(f"{self!r} was already released")
        self._pauser = None
        pauser._release()


class Pauser:
    """
    Counted pauses of one producer.

    ``actuallyPause`` is called when the first :class:`Pause` is taken, ``actuallyResume``
    when the last one is released; in between, more pauses only count. ``pauses`` counts
    the times the producer was actually paused (a statistic, never reset).
    """

    __slots__ = ("_actuallyPause", "_actuallyResume", "count", "pauses")

    def __init__(
        self, actuallyPause: Callable[[], object], actuallyResume: Callable[[], object]
    ) -> None:
        self._actuallyPause = actuallyPause
        self._actuallyResume = actuallyResume
        #: How many pauses are held now.
        self.count = 0
        #: How many times the producer went from running to paused.
        self.pauses = 0

    def __repr__(self) -> str:
        return f"<Pauser {self.count} held, paused {self.pauses} times>"

    @property
    def paused(self) -> bool:
        """Whether any pause is held."""
        return self.count > 0

    def pause(self, reason: object = None) -> Pause:
        """Take a pause; the producer is paused if it was running."""
        p = Pause(self, reason)
        self._take()
        return p

    def _take(self) -> None:
        self.count += 1
        if self.count == 1:
            self.pauses += 1
            self._actuallyPause()

    def _release(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._actuallyResume()


class Watermark:
    """
    High/low hysteresis over a level (bytes buffered, messages queued).

    :meth:`check` with the current level takes a pause from ``pauser`` when the level has
    reached ``high`` and releases it once the level has drained to ``low`` (default: half of
    ``high``). At most one pause is held at a time. ``high`` may be changed at run time
    (:meth:`setLimits`); a new limit is applied at the next :meth:`check`.
    """

    __slots__ = ("pauser", "high", "low", "_pause", "reason")

    def __init__(
        self, pauser: Pauser, high: int, low: int | None = None, reason: object = None
    ) -> None:
        self.pauser = pauser
        self.high = high
        self.low = high // 2 if low is None else low
        self.reason = reason
        self._pause: Pause | None = None
        self._validate()

    def __repr__(self) -> str:
        state = "above" if self._pause is not None else "below"
        return f"<Watermark high={self.high} low={self.low} {state}>"

    def _validate(self) -> None:
        if self.high < 1:
            raise ValueError(f"a high watermark must be at least 1, not {self.high}")
        if not 0 <= self.low < self.high:
            raise ValueError(f"low watermark {self.low} must be in [0, {self.high})")

    def setLimits(self, high: int, low: int | None = None) -> None:
        """Change the watermarks (``low`` defaults to half of ``high``)."""
        self.high = high
        self.low = high // 2 if low is None else low
        self._validate()

    @property
    def holding(self) -> bool:
        """Whether the level went above the high watermark and has not drained yet."""
        return self._pause is not None

    def check(self, level: int) -> None:
        """Pause or resume according to ``level``."""
        if self._pause is None:
            if level >= self.high:
                # Hold the pause before the producer hears of it: its pauseProducing() may
                # re-enter check() (a producer that writes a last chunk when paused), which
                # must find the pause held rather than take a second one that nobody frees.
                self._pause = Pause(self.pauser, self.reason)
                self.pauser._take()
        elif level <= self.low:
            self.release()

    def release(self) -> None:
        """Release the pause this watermark holds, if any (say, when the stream ends)."""
        p = self._pause
        if p is not None:
            self._pause = None
            p.unpause()
