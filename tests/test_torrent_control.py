"""
:func:`pcpkit.torrent.control.recheck`'s waiting, as pure logic on a ``task.Clock``: libtorrent
ignores ``force_recheck`` while it checks a just-added torrent's resume data, so ``recheck``
asks again until the torrent has left that state. (The end-to-end case, a daemon restarted
after ``kill -9``, is ``tests/test_resume.py``.)
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from pcpkit.torrent import control
from pcpkit.torrent.session import SessionStopped, UnknownTorrent, lt

CHECKING = lt.torrent_status.checking_resume_data
DOWNLOADING = lt.torrent_status.downloading


class Handle:
    """A torrent handle whose state goes through ``states``, the last one for good."""

    def __init__(self, *states: Any) -> None:
        self.states = list(states)
        self.rechecks = 0

    def status(self, flags: int = 0) -> Any:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return type("Status", (), {"state": state})()

    def force_recheck(self) -> None:
        # what libtorrent does: nothing while the resume data is being checked
        if self.states[0] != CHECKING:
            self.rechecks += 1


class Session:
    def __init__(self, handle: Handle) -> None:
        self.torrent: Handle | None = handle
        self.error: Exception = UnknownTorrent(1)

    def handle(self, torrentid: int) -> Handle:
        if self.torrent is None:
            raise self.error
        return self.torrent


def test_a_recheck_of_a_settled_torrent_is_asked_at_once() -> None:
    clock, handle = Clock(), Handle(DOWNLOADING)
    control.recheck(Session(handle), 1, clock)  # type: ignore[arg-type]
    assert handle.rechecks == 1
    assert clock.getDelayedCalls() == []


def test_a_recheck_during_the_resume_check_waits_until_it_is_over() -> None:
    clock, handle = Clock(), Handle(CHECKING, CHECKING, CHECKING, DOWNLOADING)
    control.recheck(Session(handle), 1, clock)  # type: ignore[arg-type]
    assert handle.rechecks == 0
    clock.advance(control.RECHECK_RETRY)
    clock.advance(control.RECHECK_RETRY)
    assert handle.rechecks == 0
    clock.advance(control.RECHECK_RETRY)
    assert handle.rechecks == 1
    assert clock.getDelayedCalls() == []


def test_a_waiting_recheck_is_dropped_when_the_torrent_or_session_goes() -> None:
    for error in (UnknownTorrent(1), SessionStopped()):
        clock, handle = Clock(), Handle(CHECKING)
        session = Session(handle)
        control.recheck(session, 1, clock)  # type: ignore[arg-type]
        session.torrent, session.error = None, error
        clock.advance(control.RECHECK_RETRY)
        assert handle.rechecks == 0
        assert clock.getDelayedCalls() == []
