"""
The Linux zero-copy path of :class:`pcpkit.internet.relay.Relay`.

Each direction of a relayed connection moves bytes socket -> pipe -> socket with
``os.splice``, so the payload never enters Python: the pipe is the direction's buffer and
its size bounds what the relay holds. The reactor drives it: one descriptor object per
socket is registered with ``addReader`` / ``addWriter`` on the socket's file descriptor
(epoll keys its registrations by descriptor number, so one object must serve both the
reading and the writing interest of a socket).

The Twisted transports keep owning the sockets. The relay stops them reading and writing
before the splice starts and closes them (``loseConnection`` / ``abortConnection``) after it
ends, so a socket is never closed behind the reactor's back and no descriptor leaks.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReadWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit._pause import Pause, Pauser
from pcpkit._twisted import currentFailure

__all__ = ["FDS_PER_CONNECTION", "Flow", "SpliceConnection", "spliceAvailable"]

#: Descriptors a spliced connection holds: its two sockets and a pipe (two ends) each way.
FDS_PER_CONNECTION = 6

_FLAGS: int = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
# Linux values; the fcntl module only names them on Python 3.10+ builds for Linux.
_F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ: int = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def spliceAvailable() -> bool:
    """Whether this platform has ``os.splice`` (Linux, Python 3.10+)."""
    return sys.platform.startswith("linux") and hasattr(os, "splice") and hasattr(os, "pipe2")


def _zero() -> int:
    return 0


class Flow:
    """
    Counters for one direction of one relayed connection.

    ``bytes`` relayed so far, ``pauses`` (how often the reading side was stopped because
    the writing side could not keep up), ``peakBuffered`` (the most bytes ever held in the
    relay for this direction) and ``buffered`` (held right now).
    """

    __slots__ = ("bytes", "pauses", "peakBuffered", "measure", "pauser")

    def __init__(self) -> None:
        self.bytes = 0
        self.pauses = 0
        self.peakBuffered = 0
        #: Returns the bytes held right now; set by whichever path relays this direction.
        self.measure: Callable[[], int] = _zero
        #: The reading side's pauses; set by whichever path relays this direction.
        self.pauser: Pauser | None = None

    @property
    def buffered(self) -> int:
        return self.measure()

    @property
    def paused(self) -> bool:
        """Whether the reading side is paused now (the writing side is not keeping up)."""
        return self.pauser is not None and self.pauser.paused

    def __repr__(self) -> str:
        return (
            f"<Flow bytes={self.bytes} pauses={self.pauses} "
            f"buffered={self.buffered} peak={self.peakBuffered}>"
        )


@implementer(IReadWriteDescriptor)
class _Socket:
    """
    The reactor's view of one relayed socket: readable feeds the direction it is the
    source of, writable drains the direction it is the sink of.
    """

    def __init__(self, conn: SpliceConnection, sock: socket.socket) -> None:
        self.conn = conn
        self.sock = sock
        self.fd = sock.fileno()
        self.source: _Pipe | None = None
        self.sink: _Pipe | None = None
        self.reading = False
        self.writing = False

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "pcpkit.relay.splice"

    def doRead(self) -> None:
        if self.source is not None:
            self.source.fill()

    def doWrite(self) -> None:
        if self.sink is not None:
            self.sink.drain()

    def connectionLost(self, reason: Failure) -> None:
        # Only the reactor calls this: a hang-up or error it saw on the descriptor.
        self.conn.fail(reason)

    def startReading(self) -> None:
        if not self.reading:
            self.reading = True
            self.conn.reactor.addReader(self)

    def stopReading(self) -> None:
        if self.reading:
            self.reading = False
            self.conn.reactor.removeReader(self)

    def startWriting(self) -> None:
        if not self.writing:
            self.writing = True
            self.conn.reactor.addWriter(self)

    def stopWriting(self) -> None:
        if self.writing:
            self.writing = False
            self.conn.reactor.removeWriter(self)


class _Pipe:
    """One direction: source socket -> pipe -> sink socket, at most ``limit`` bytes in the pipe."""

    def __init__(
        self, conn: SpliceConnection, source: _Socket, sink: _Socket, size: int, flow: Flow
    ) -> None:
        self.conn = conn
        self.source = source
        self.sink = sink
        self.flow = flow
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            # A bigger pipe means fewer wake-ups per byte; the kernel may refuse (per-user
            # pipe quota, pipe-max-size), and the default 64 KiB pipe still works.
            fcntl.fcntl(self.w, _F_SETPIPE_SZ, size)
        except OSError:
            pass
        self.limit = min(size, fcntl.fcntl(self.w, _F_GETPIPE_SZ))
        # Resume reading at half the limit: hysteresis, as everywhere in pcpkit.
        self.lowWatermark = self.limit // 2
        self.inPipe = 0
        self.pauser = Pauser(source.stopReading, source.startReading)
        self._full: Pause | None = None  # held while the pipe waits for the sink
        self.eof = False
        self.finished = False
        flow.measure = self.measure
        flow.pauser = self.pauser
        source.source = self
        sink.sink = self

    def measure(self) -> int:
        return self.inPipe

    def fill(self) -> None:
        """The source is readable: move what fits into the pipe, then try to pass it on."""
        # Read again after a short read: a short message is often followed by its end of
        # stream, and seeing both in one reactor turn saves a turn per connection.
        again = True
        while again:
            if self.conn.done:
                return
            room = self.limit - self.inPipe
            try:
                n = os.splice(self.source.fd, self.w, room, flags=_FLAGS)
            except BlockingIOError:
                if self.inPipe:
                    # Either the socket is empty or the pipe's slots are full (a slot can
                    # hold less than a page); both are cured by waiting for the sink.
                    self._pause()
                return
            except OSError:
                self.conn.fail(currentFailure())
                return
            if n == 0:
                self.eof = True
                self.source.stopReading()
                if not self.inPipe:
                    self._finish()
                return
            self.inPipe += n
            self.flow.bytes += n
            if self.inPipe > self.flow.peakBuffered:
                self.flow.peakBuffered = self.inPipe
            # Pass it on at once: when the sink keeps up this saves a reactor turn per chunk.
            self.drain()
            if self.inPipe >= self.limit and not self.conn.done:
                self._pause()
                return
            again = n < room and not self.paused

    def drain(self) -> None:
        """The sink is writable (or we just filled the pipe): move the pipe into it."""
        if self.finished or self.conn.done:
            return
        n = 0
        if self.inPipe:
            try:
                n = os.splice(self.r, self.sink.fd, self.inPipe, flags=_FLAGS)
            except BlockingIOError:
                pass
            except OSError:
                self.conn.fail(currentFailure())
                return
            self.inPipe -= n
        if self.inPipe:
            self.sink.startWriting()
        else:
            self.sink.stopWriting()
            if self.eof:
                self._finish()
                return
        full = self._full
        if full is not None and n and self.inPipe <= self.lowWatermark:
            self._full = None
            full.unpause()

    @property
    def paused(self) -> bool:
        return self.pauser.paused

    def _pause(self) -> None:
        if self._full is None:
            self.flow.pauses += 1
            self._full = self.pauser.pause("the pipe is full")
            # Something is in the pipe, so the sink's writability will resume us.
            self.sink.startWriting()

    def _finish(self) -> None:
        # Everything read has been written: propagate the half-close.
        try:
            self.sink.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.conn.fail(currentFailure())
            return
        self.finished = True
        self.sink.stopWriting()
        self.conn.directionFinished()

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.r = self.w = -1


class SpliceConnection:
    """
    Splice both directions between two connected stream sockets until both have ended.

    ``onDone(None)`` is called once both directions have delivered their end of stream
    (each sink shut down for writing); ``onDone(failure)`` as soon as either socket fails.
    Either way the splice has let go of both sockets (no reactor registration, pipes
    closed) and the caller closes them. :meth:`abort` lets go without calling ``onDone``.
    """

    def __init__(
        self,
        reactor: Any,
        a: socket.socket,
        b: socket.socket,
        size: int,
        aToB: Flow,
        bToA: Flow,
        onDone: Callable[[Failure | None], None],
    ) -> None:
        self.reactor = reactor
        self.onDone = onDone
        self.done = False
        self._a = _Socket(self, a)
        self._b = _Socket(self, b)
        self._pipes: list[_Pipe] = []
        try:
            self._pipes.append(_Pipe(self, self._a, self._b, size, aToB))
            self._pipes.append(_Pipe(self, self._b, self._a, size, bToA))
        except BaseException:
            self._release()
            raise

    def start(self) -> None:
        self._a.startReading()
        self._b.startReading()

    def directionFinished(self) -> None:
        if all(p.finished for p in self._pipes):
            self._end(None)

    def fail(self, reason: Failure) -> None:
        self._end(reason)

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self._release()

    def _end(self, reason: Failure | None) -> None:
        if self.done:
            return
        self.done = True
        self._release()
        self.onDone(reason)

    def _release(self) -> None:
        for s in (self._a, self._b):
            s.stopReading()
            s.stopWriting()
            s.source = s.sink = None
        for p in self._pipes:
            p.close()
