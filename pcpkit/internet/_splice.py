"""
The raw-socket paths of :class:`pcpkit.internet.relay.Relay`: splice and copy.

When both ends of a relayed connection are plain stream sockets, the relay moves the bytes
itself, with the reactor only as the poller: one descriptor object per socket is registered
with ``addReader`` / ``addWriter`` on the socket's file descriptor (epoll keys its
registrations by descriptor number, so one object serves both the reading and the writing
interest of a socket). Each direction is a bounded buffer between two sockets:

* **splice** (Linux): socket -> pipe -> socket with ``os.splice``; the payload never enters
  Python, the pipe is the direction's buffer and its size bounds what the relay holds;
* **copy** (any reactor with ``IReactorFDSet``): ``recv_into`` a ring buffer of the
  direction's size, ``send`` from it: no allocation per read, reads as large as the buffer
  has room for, no Python call per byte beyond the two socket calls.

Either way a direction starts with no buffer of its own (a short exchange never needs one:
see :class:`_Direction`), and the pipes and rings of finished connections are kept for the
next ones (:class:`Pool`).

Nor does a relayed connection need a Twisted transport: the relay accepts the client's
socket itself and :class:`Dial` connects a new non-blocking TCP socket to the target, so a
connection costs no ``tcp.Server``, ``Client``, ``Connector``, protocol, address objects,
``Deferred`` or reference cycle. Where the sockets do come from Twisted transports (other
endpoints, a target given by name), the relay stops the transports before it starts and
closes them after it ends, so a socket is never closed behind the reactor's back.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.error import getConnectError
from twisted.internet.interfaces import IReactorFDSet, IReadWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit._pause import Pause, Pauser
from pcpkit._twisted import currentFailure

__all__ = [
    "FDS_PER_CONNECTION",
    "Dial",
    "Flow",
    "Pool",
    "SocketRelay",
    "closeSocket",
    "rawSocketsAvailable",
    "spliceAvailable",
]

#: Descriptors a spliced connection holds: its two sockets and a pipe (two ends) each way.
FDS_PER_CONNECTION = 6

_FLAGS: int = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
# Linux values; the fcntl module only names them on Python 3.10+ builds for Linux.
_F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ: int = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_IN_PROGRESS = frozenset({0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN})
_LINGER_RESET = struct.pack("ii", 1, 0)
_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)


def spliceAvailable() -> bool:
    """Whether this platform has ``os.splice`` (Linux, Python 3.10+)."""
    return sys.platform.startswith("linux") and hasattr(os, "splice") and hasattr(os, "pipe2")


def rawSocketsAvailable(reactor: Any) -> bool:
    """Whether ``reactor`` can poll our own descriptors (``IReactorFDSet``: not IOCP)."""
    return bool(IReactorFDSet.providedBy(reactor))


def closeSocket(sock: socket.socket, reset: bool) -> None:
    """Close ``sock``; ``reset``: with an RST, dropping what is unsent (as ``abortConnection``)."""
    if reset:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
    sock.close()


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

    def __init__(self, conn: SocketRelay, sock: socket.socket) -> None:
        self.reactor = conn.reactor
        # Not the connection itself: no reference cycle to leave to the garbage collector.
        self.onLost: Callable[[Failure], None] = conn.fail
        self.sock = sock
        self.fd = sock.fileno()
        self.source: _Direction | None = None
        self.sink: _Direction | None = None
        self.reading = False
        self.writing = False

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "pcpkit.relay"

    def doRead(self) -> None:
        if self.source is not None:
            self.source.fill()

    def doWrite(self) -> None:
        if self.sink is not None:
            self.sink.drain()

    def connectionLost(self, reason: Failure) -> None:
        # Only the reactor calls this: a hang-up or error it saw on the descriptor.
        self.onLost(reason)

    def startReading(self) -> None:
        if not self.reading:
            self.reading = True
            self.reactor.addReader(self)

    def stopReading(self) -> None:
        if self.reading:
            self.reading = False
            self.reactor.removeReader(self)

    def startWriting(self) -> None:
        if not self.writing:
            self.writing = True
            self.reactor.addWriter(self)

    def stopWriting(self) -> None:
        if self.writing:
            self.writing = False
            self.reactor.removeWriter(self)


class _Direction:
    """
    One direction: source socket -> buffer -> sink socket, at most ``limit`` bytes held.

    Subclasses move the bytes: :meth:`_read` (at most ``room`` bytes from the source into
    the buffer) and :meth:`_write` (from the buffer into the sink), both returning the
    count and raising ``BlockingIOError`` when the socket is not ready.

    A direction starts without a buffer of its own: it reads into the relay's one scratch
    buffer and sends at once, and takes its own buffer (a pipe, a ring) only for what the
    sink would not take, or, splicing, once reads come in whole scratch-fulls (a bulk
    transfer). Most short exchanges never need one: no pipe to create, no memory to touch.
    """

    #: Whether a read that would block with bytes held may mean "the buffer is full".
    blockedMeansFull = False
    #: The most bytes read at once into the scratch buffer.
    scratchSize = 65536

    def __init__(self, conn: SocketRelay, source: _Socket, sink: _Socket, flow: Flow) -> None:
        self.conn = conn
        self.source = source
        self.sink = sink
        self.flow = flow
        self.limit = 0  # set by the subclass
        self.held = 0
        self.own = False  # whether the buffer of its own is there
        self._pauser: Pauser | None = None  # made at the first pause
        self._full: Pause | None = None  # held while the buffer waits for the sink
        self.eof = False
        self.finished = False
        flow.measure = self.measure
        source.source = self
        sink.sink = self

    @property
    def lowWatermark(self) -> int:
        # Resume reading at half the limit: hysteresis, as everywhere in pcpkit.
        return self.limit // 2

    def measure(self) -> int:
        return self.held

    def _read(self, room: int) -> int:
        raise NotImplementedError

    def _write(self) -> int:
        raise NotImplementedError

    def _adopt(self, data: memoryview) -> None:
        """Take the buffer of our own, holding ``data`` (what the sink did not take)."""
        raise NotImplementedError

    def _bulk(self) -> None:
        """A read filled the scratch buffer: take our own buffer if that is better."""

    def _pass(self, room: int) -> int:
        """Without our own buffer: read into the scratch buffer and send it on at once."""
        scratch = self.conn.pool.scratch
        n = self.source.sock.recv_into(scratch, min(room, self.scratchSize))
        if not n:
            return 0
        try:
            sent = self.sink.sock.send(scratch[:n])
        except BlockingIOError:
            sent = 0
        if sent < n:
            self._adopt(scratch[sent:n])
            self.own = True
            self.held = n - sent
            self.sink.startWriting()
        elif n == self.scratchSize:
            self._bulk()
        return n

    def fill(self, eager: bool = False) -> None:
        """
        The source is readable: move what fits into the buffer, then try to pass it on.

        ``eager``: after a short read, read again. When relaying starts, what a client
        sent while the target was dialled is often a short message and its end of stream:
        seeing both at once saves a reactor turn. Later a short read means the socket is
        empty, and another read would only fail.
        """
        again = True
        while again:
            if self.conn.done:
                return
            room = self.limit - self.held
            own = self.own
            try:
                n = self._read(room) if own else self._pass(room)
            except BlockingIOError:
                if self.held and self.blockedMeansFull:
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
                if not self.held:
                    self._finish()
                return
            flow = self.flow
            flow.bytes += n
            if own:
                self.held += n
                # Pass it on at once: when the sink keeps up this saves a reactor turn per
                # chunk.
                self.drain()
            if self.held > flow.peakBuffered:
                flow.peakBuffered = self.held
            if self.held >= self.limit and not self.conn.done:
                self._pause()
                return
            again = eager and n < room and self._full is None

    def drain(self) -> None:
        """The sink is writable (or we just filled the buffer): move the buffer into it."""
        if self.finished or self.conn.done:
            return
        n = 0
        if self.held:
            try:
                n = self._write()
            except BlockingIOError:
                pass
            except OSError:
                self.conn.fail(currentFailure())
                return
        if self.held:
            self.sink.startWriting()
        else:
            self.sink.stopWriting()
            if self.eof:
                self._finish()
                return
        full = self._full
        if full is not None and n and self.held <= self.lowWatermark:
            self._full = None
            full.unpause()

    @property
    def paused(self) -> bool:
        return self._pauser is not None and self._pauser.paused

    def _pause(self) -> None:
        if self._full is None:
            self.flow.pauses += 1
            pauser = self._pauser
            if pauser is None:
                pauser = self._pauser = Pauser(self.source.stopReading, self.source.startReading)
                self.flow.pauser = pauser  # what pcpkit.inspect shows as paused
            self._full = pauser.pause("the buffer is full")
            # Something is held, so the sink's writability will resume us.
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
        """Let go of the buffer."""


class _Pipe(_Direction):
    """The splice direction: the buffer is a pipe, the bytes stay in the kernel."""

    blockedMeansFull = True
    # At most a page at a time through the scratch buffer: any pipe holds at least a page,
    # however short of pipe memory the kernel is, so what the sink did not take fits.
    scratchSize = 4096

    def __init__(
        self, conn: SocketRelay, source: _Socket, sink: _Socket, size: int, flow: Flow
    ) -> None:
        super().__init__(conn, source, sink, flow)
        self.size = self.limit = size
        self.r = self.w = -1

    def _open(self) -> None:
        self.r, self.w, self.limit = self.conn.pool.takePipe(self.size)
        self.own = True

    def _adopt(self, data: memoryview) -> None:
        self._open()
        try:
            n = os.write(self.w, data)
        except BlockingIOError:
            n = 0
        if n != len(data):  # pragma: no cover - a pipe holds a page, at the least
            raise OSError(errno.ENOBUFS, "a new pipe would not take a page")

    def _bulk(self) -> None:
        try:
            self._open()
        except OSError:
            pass  # out of descriptors, say: go on copying through the scratch buffer

    def _read(self, room: int) -> int:
        return os.splice(self.source.fd, self.w, room, flags=_FLAGS)

    def _write(self) -> int:
        n = os.splice(self.r, self.sink.fd, self.held, flags=_FLAGS)
        self.held -= n
        return n

    def close(self) -> None:
        r, w, self.r, self.w = self.r, self.w, -1, -1
        if r < 0:
            return
        if not self.held:
            self.conn.pool.givePipe(r, w, self.limit)
            return
        for fd in (r, w):
            try:
                os.close(fd)
            except OSError:
                pass


class _Buffer(_Direction):
    """
    The copy direction: a ring buffer of ``size`` bytes, ``recv_into`` one end of it and
    ``send`` from the other.
    """

    def __init__(
        self, conn: SocketRelay, source: _Socket, sink: _Socket, size: int, flow: Flow
    ) -> None:
        super().__init__(conn, source, sink, flow)
        self.limit = size
        # Read as much as the ring would hold, also through the scratch buffer.
        self.scratchSize = min(size, len(conn.pool.scratch))
        self.view: memoryview | None = None  # the ring, taken when first needed
        self.start = 0  # where the held bytes begin; they may wrap around the end

    def _adopt(self, data: memoryview) -> None:
        view = self.view = self.conn.pool.takeBuffer(self.limit)
        view[: len(data)] = data
        self.start = 0

    def _read(self, room: int) -> int:
        view = self.view
        assert view is not None  # taken by _adopt
        # The free space from the end of the held bytes, up to the end of the ring: a read
        # that filled it comes back for the rest at the front (fill's short-read loop).
        limit = self.limit
        end = self.start + self.held
        if end >= limit:
            end -= limit
            return self.source.sock.recv_into(view[end : end + room])
        return self.source.sock.recv_into(view[end : min(limit, end + room)])

    def _write(self) -> int:
        sent = 0
        send = self.sink.sock.send
        view = self.view
        assert view is not None  # something is held
        while self.held:
            start = self.start
            chunk = min(self.held, self.limit - start)
            try:
                n = send(view[start : start + chunk])
            except BlockingIOError:
                if sent:
                    return sent
                raise
            sent += n
            self.held -= n
            start += n
            if not self.held:
                start = 0  # empty: start over at the front, for the longest reads
            elif start == self.limit:
                start = 0
            self.start = start
            if n < chunk:
                break
        return sent

    def close(self) -> None:
        view, self.view = self.view, None
        if view is not None:
            self.conn.pool.giveBuffer(view)


class Pool:
    """
    Idle pipes (splice) and ring buffers (copy) kept for the next connections.

    Setting up a direction's own buffer costs a ``pipe2`` and two ``fcntl`` calls, or the
    pages of a ring (a quarter of a MiB by default). Only what a connection gave back empty
    (a clean end) is kept, at most ``keep`` of each; :meth:`close` closes the pipes. Also
    holds the scratch buffer of the directions that have none of their own yet.
    """

    def __init__(self, keep: int = 16, scratchSize: int = 262144) -> None:
        self.keep = keep
        self._pipes: list[tuple[int, int, int]] = []  # (read end, write end, capacity)
        self._buffers: list[memoryview] = []
        self._scratchSize = scratchSize
        self._scratch: memoryview | None = None

    @property
    def scratch(self) -> memoryview:
        """
        The one buffer every direction without a buffer of its own reads into and sends
        from at once (the reactor runs one of them at a time; nothing stays in it).
        """
        if self._scratch is None:
            self._scratch = self.takeBuffer(self._scratchSize)
        return self._scratch

    @property
    def descriptors(self) -> int:
        """Descriptors held by idle pipes."""
        return 2 * len(self._pipes)

    def takePipe(self, size: int) -> tuple[int, int, int]:
        """A pipe ``(r, w, capacity)`` of at most ``size`` bytes, non-blocking."""
        pipes = self._pipes
        while pipes:
            r, w, capacity = pipes.pop()
            if capacity <= size:
                return r, w, capacity
            os.close(r)
            os.close(w)
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            # A bigger pipe means fewer wake-ups per byte; the kernel may refuse (per-user
            # pipe quota, pipe-max-size), and the default 64 KiB pipe still works.
            fcntl.fcntl(w, _F_SETPIPE_SZ, size)
        except OSError:
            pass
        try:
            capacity = fcntl.fcntl(w, _F_GETPIPE_SZ)
        except OSError:
            os.close(r)
            os.close(w)
            raise
        return r, w, min(size, capacity)

    def givePipe(self, r: int, w: int, capacity: int) -> None:
        """An empty pipe back, to keep or close."""
        if len(self._pipes) < self.keep:
            self._pipes.append((r, w, capacity))
        else:
            os.close(r)
            os.close(w)

    def takeBuffer(self, size: int) -> memoryview:
        buffers = self._buffers
        while buffers:
            view = buffers.pop()
            if len(view) == size:
                return view
        # Anonymous memory rather than a bytearray: the kernel provides zeroed pages as they
        # are first touched, where a bytearray would write every page of it at once (a
        # quarter of a MiB per direction, for a connection that may carry a few bytes).
        return memoryview(mmap.mmap(-1, size))

    def giveBuffer(self, view: memoryview) -> None:
        if len(self._buffers) < self.keep:
            self._buffers.append(view)

    def close(self) -> None:
        """Close the idle pipes, drop the idle buffers, keep none until ``keep`` is set."""
        self.keep = 0
        pipes, self._pipes = self._pipes, []
        for r, w, _ in pipes:
            os.close(r)
            os.close(w)
        self._buffers = []


class SocketRelay:
    """
    Relay both directions between two connected stream sockets until both have ended.

    ``splice``: through pipes with ``os.splice`` (Linux), else through a ring buffer per
    direction. ``size`` is the most bytes held per direction.

    ``onDone(None)`` is called once both directions have delivered their end of stream
    (each sink shut down for writing); ``onDone(failure)`` as soon as either socket fails.
    Either way the relay has let go of both sockets (no reactor registration, buffers
    released) and the caller closes them. :meth:`abort` lets go without calling ``onDone``.
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
        *,
        splice: bool,
        pool: Pool,
    ) -> None:
        self.reactor = reactor
        self.pool = pool
        self.onDone: Callable[[Failure | None], None] | None = onDone
        self.done = False
        self._a = _Socket(self, a)
        self._b = _Socket(self, b)
        self._directions: list[_Direction] = []
        kind = _Pipe if splice else _Buffer
        try:
            self._directions.append(kind(self, self._a, self._b, size, aToB))
            self._directions.append(kind(self, self._b, self._a, size, bToA))
        except BaseException:
            self._release()
            raise

    def start(self) -> None:
        """Relay from now on, starting with what ``a`` has sent already, if anything."""
        # A client usually speaks first, and by the time the target has answered the dial
        # its first bytes (often its end of stream too) are waiting: read them now rather
        # than in another turn of the reactor, and poll ``a`` only if it has more to say.
        first = self._directions[0]
        first.fill(eager=True)
        if self.done:
            return
        if not (first.eof or first.paused):
            self._a.startReading()
        self._b.startReading()

    def directionFinished(self) -> None:
        for d in self._directions:
            if not d.finished:
                return
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
        onDone = self.onDone
        self._release()
        if onDone is not None:
            onDone(reason)

    def _release(self) -> None:
        for s in (self._a, self._b):
            s.stopReading()
            s.stopWriting()
            s.source = s.sink = None
            s.onLost = _ignore
        for d in self._directions:
            d.close()
        # Break the cycles (the directions and sockets point back here; the caller's
        # counters point at the directions' meters) so the connection is freed by
        # reference counting, not by the cyclic garbage collector.
        self._directions = []
        self.onDone = None


@implementer(IReadWriteDescriptor)
class Dial:
    """
    Connect a new non-blocking TCP socket to ``address`` (an IP address, no lookup), from
    :meth:`start`.

    ``onConnected(sock)`` once connected (maybe within :meth:`start`); ``onFailed(failure)``
    with Twisted's connection errors (``ConnectionRefusedError``, ``TimeoutError`` after
    ``timeout`` seconds, ...).
    Either is called at most once; :meth:`cancel` calls neither and closes the socket.
    A failure to start (no descriptors left, say) is raised by the constructor.
    """

    def __init__(
        self,
        reactor: Any,
        family: int,
        address: tuple[Any, ...],
        bindAddress: tuple[Any, ...] | None,
        timeout: float | None,
        onConnected: Callable[[socket.socket], None],
        onFailed: Callable[[Failure], None],
    ) -> None:
        self.reactor = reactor
        self.onConnected = onConnected
        self.onFailed = onFailed
        # Non-blocking from the start: one system call less than setblocking().
        sock = socket.socket(family, socket.SOCK_STREAM | _NONBLOCK)
        try:
            if not _NONBLOCK:
                sock.setblocking(False)
            if bindAddress is not None:
                sock.bind(bindAddress)
            err = sock.connect_ex(address)
            if err not in _IN_PROGRESS:
                raise OSError(err, os.strerror(err))
        except BaseException:
            sock.close()
            raise
        self.sock: socket.socket | None = sock
        self.fd = sock.fileno()
        self.timeout = timeout
        self._timer: Any = None

    def start(self) -> None:
        """Report now if the connect is done already (usual on loopback), else wait for it."""
        sock = self.sock
        if sock is None:
            return
        try:
            sock.getpeername()
        except OSError:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(err)
                return
            if self.timeout:
                self._timer = self.reactor.callLater(self.timeout, self._timedOut)
            self.reactor.addWriter(self)
            return
        # Connected: a reactor turn (and two epoll_ctl calls) saved.
        self.sock = None
        onConnected = self.onConnected
        self._forget()
        onConnected(sock)

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "pcpkit.relay"

    def doRead(self) -> None:  # pragma: no cover - never registered for reading
        pass

    def doWrite(self) -> None:
        sock = self.sock
        if sock is None:
            return
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err in (errno.EINPROGRESS, errno.EALREADY):
            return  # not yet
        self._stop()
        if err:
            self._fail(err)
        else:
            self.sock = None
            onConnected = self.onConnected
            self._forget()
            onConnected(sock)

    def connectionLost(self, reason: Failure) -> None:
        # The reactor saw an error or a hang-up (a refused connect): the socket says which.
        sock = self.sock
        if sock is None:
            return
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._stop()
        self._fail(err or errno.ECONNREFUSED)

    def cancel(self) -> None:
        """Give up: close the socket, report nothing."""
        if self.sock is not None:
            self._stop()
            self._close()
            self._forget()

    def _timedOut(self) -> None:
        self._timer = None
        if self.sock is not None:
            self._stop()
            self._close()
            self._report(_failure(ConnectTimeoutError()))  # type: ignore[no-untyped-call,unused-ignore]

    def _fail(self, err: int) -> None:
        self._close()
        error = getConnectError((err, os.strerror(err)))  # type: ignore[no-untyped-call,unused-ignore]
        self._report(_failure(error))

    def _report(self, reason: Failure) -> None:
        onFailed = self.onFailed
        self._forget()
        onFailed(reason)

    def _stop(self) -> None:
        self.reactor.removeWriter(self)
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _forget(self) -> None:
        self.onConnected = self.onFailed = _ignore


def _ignore(_: object) -> None:
    pass


def _failure(error: BaseException) -> Failure:
    return Failure(error)  # type: ignore[no-untyped-call,unused-ignore]
