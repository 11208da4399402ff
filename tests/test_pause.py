"""The one pause primitive: counted pauses and watermark hysteresis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcpkit._pause import AlreadyUnpaused, Pauser, Watermark


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.pauser = Pauser(
            lambda: self.calls.append("pause"), lambda: self.calls.append("resume")
        )


def test_countedPauses() -> None:
    """The producer resumes only when every party that paused it has resumed."""
    r = Recorder()
    a = r.pauser.pause("a")
    b = r.pauser.pause("b")
    assert r.calls == ["pause"]
    assert r.pauser.paused and r.pauser.count == 2
    a.unpause()
    assert r.calls == ["pause"]
    b.unpause()
    assert r.calls == ["pause", "resume"]
    assert not r.pauser.paused
    assert r.pauser.pauses == 1


def test_doubleUnpause() -> None:
    """A pause is released once; a second release is a bug and says so."""
    r = Recorder()
    p = r.pauser.pause("me")
    p.unpause()
    with pytest.raises(AlreadyUnpaused, match="me"):
        p.unpause()
    assert r.calls == ["pause", "resume"]


def test_watermarkHysteresis() -> None:
    """Pause at the high watermark, resume at the low one, nothing in between."""
    r = Recorder()
    w = Watermark(r.pauser, 10)
    assert w.low == 5
    for level in range(10):
        w.check(level)
    assert r.calls == []
    w.check(10)
    assert r.calls == ["pause"] and w.holding
    for level in (12, 9, 6, 8):
        w.check(level)
    assert r.calls == ["pause"]
    w.check(5)
    assert r.calls == ["pause", "resume"] and not w.holding


def test_watermarkSharesPauser() -> None:
    """Two watermarks on one producer: it resumes when both have drained."""
    r = Recorder()
    w1, w2 = Watermark(r.pauser, 4, 1), Watermark(r.pauser, 4, 1)
    w1.check(4)
    w2.check(5)
    w1.check(0)
    assert r.calls == ["pause"]
    w2.check(1)
    assert r.calls == ["pause", "resume"]


def test_watermarkBadLimits() -> None:
    r = Recorder()
    with pytest.raises(ValueError, match="low watermark 8"):
        Watermark(r.pauser, 8, 8)
    with pytest.raises(ValueError, match="at least 1"):
        Watermark(r.pauser, 0)


@given(st.lists(st.integers(0, 40)), st.integers(1, 20))
def test_watermarkProperty(levels: list[int], high: int) -> None:
    """Pause and resume alternate; paused exactly when the hysteresis says so."""
    r = Recorder()
    w = Watermark(r.pauser, high)
    expected = False
    for level in levels:
        w.check(level)
        if not expected and level >= high:
            expected = True
        elif expected and level <= high // 2:
            expected = False
        assert r.pauser.paused is expected
    assert r.calls == ["pause", "resume"] * (len(r.calls) // 2) + ["pause"] * (len(r.calls) % 2)


def test_watermarkReenteredFromPause() -> None:
    """A producer whose pause re-enters the check (it writes a last chunk) is paused once."""
    calls: list[str] = []
    level = [10]

    def pause() -> None:
        calls.append("pause")
        level[0] += 5  # the producer's last chunk, written while it is being paused
        w.check(level[0])

    pauser = Pauser(pause, lambda: calls.append("resume"))
    w = Watermark(pauser, 10)
    w.check(level[0])
    assert calls == ["pause"] and pauser.count == 1 and w.holding
    w.check(5)
    assert calls == ["pause", "resume"] and pauser.count == 0 and not w.holding
