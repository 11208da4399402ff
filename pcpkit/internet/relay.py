"""
A flow-controlled TCP relay: :class:`Relay`.

Every connection accepted on the ``listen`` endpoint is forwarded to a new connection to
the ``connect`` endpoint, both ways, with the flow-control contract of pcpkit: each
direction holds at most ``bufferSize`` bytes in the relay, whatever the mix of fast and slow
peers; an end of stream (a half-close) is passed on once everything before it has been
written; a connection that fails takes its partner down with it.

Three ways to move the bytes:

* when both ends are plain stream sockets (``tcp:``, ``unix:``, adopted) the relay moves
  the bytes itself on the raw sockets, with the reactor only as the poller
  (:mod:`pcpkit.internet._splice`): on Linux with ``os.splice`` (the payload goes socket ->
  pipe -> socket and never enters Python), elsewhere or with ``splice=False`` through one
  ring buffer per direction (``recv_into`` / ``send``: the **portable** path of plain
  sockets). It also accepts the connections and dials a TCP target given by IP address
  itself: a relayed connection then has no Twisted transport at all;
* for any other endpoint (TLS, your own, a name to look up) each Twisted transport is
  registered as a streaming producer on the other one, so a full write buffer pauses the
  reading side (the **portable** path of transports).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    TCP6ServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IListeningPort,
    IPushProducer,
    IReadDescriptor,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit._endpoints import clientEndpoint, connectDescription, listenDescription, serverEndpoint
from pcpkit._fifo import ByteFIFO
from pcpkit._pause import Pause, Pauser
from pcpkit._twisted import currentFailure, getReactor
from pcpkit.internet._splice import (
    FDS_PER_CONNECTION,
    Dial,
    Flow,
    Pool,
    SocketRelay,
    closeSocket,
    rawSocketsAvailable,
    spliceAvailable,
)

__all__ = [
    "DEFAULT_BACKLOG",
    "MIN_BUFFER",
    "Flow",
    "FlowTotals",
    "Relay",
    "RelayStats",
    "RelayedConnection",
]

#: the smallest ``bufferSize`` of a :class:`Relay`, in bytes
MIN_BUFFER = 1024

log = Logger(namespace="pcpkit.relay")

# Endpoints whose connections are plain stream sockets owned by a Twisted FileDescriptor:
# the only ones the splice path may take over (TLS and other wrappers hold state in Python).
_PLAIN_SERVERS = (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
    AdoptedStreamServerEndpoint,
)
_PLAIN_CLIENTS = (TCP4ClientEndpoint, TCP6ClientEndpoint, HostnameEndpoint, UNIXClientEndpoint)

_DIALLING, _RELAYING, _CLOSING = "dialling", "relaying", "closing"

#: What the relay dials itself: (family, address, bindAddress, timeout).
_RawTarget = tuple[int, tuple[Any, ...], "tuple[Any, ...] | None", "float | None"]

#: The listen queue asked for by default: a burst of connects waits in the kernel instead of
#: being dropped (and retried by the clients a second later). The kernel caps it at
#: ``net.core.somaxconn``.
DEFAULT_BACKLOG = 4096
#: Descriptors kept free for everything else in the process (logs, the reactor, ...) and
#: for the idle pipes of the splice path (at most ``2 * _POOL_KEEP``).
_RESERVED_FDS = 64
#: Idle pipes (splice) and buffers (copy) kept for the next connections (see ``Pool``).
_POOL_KEEP = 16
#: Set by :mod:`pcpkit.inspect` while its registry is on (``None`` otherwise: no cost);
#: called once with each :class:`Relay` when it is made.
inspectHook: Callable[[object], object] | None = None


class _Transport(TypingProtocol):
    """What the relay uses of a stream transport (``ITCPTransport`` + producer/consumer)."""

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def registerProducer(self, producer: Any, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def getHost(self) -> IAddress: ...
    def getPeer(self) -> IAddress: ...


@dataclass(frozen=True)
class FlowTotals:
    """One direction summed over every connection a :class:`Relay` has relayed."""

    #: Bytes relayed.
    bytes: int
    #: Times a reading side was paused because the writing side was full.
    pauses: int
    #: The most bytes one connection ever held for this direction.
    peakBuffered: int
    #: Bytes held right now, over all open connections.
    buffered: int


@dataclass(frozen=True)
class RelayStats:
    """A snapshot of a :class:`Relay`'s counters (see :attr:`Relay.stats`)."""

    #: Connections open now (accepted and not yet closed on both sides).
    active: int
    #: Connections accepted since the relay was created.
    total: int
    #: Connections closed at once because ``maxConnections`` were open.
    refused: int
    #: Connections whose target could not be reached.
    failedDials: int
    #: Connections relayed by the splice path.
    spliced: int
    #: Client -> target.
    toTarget: FlowTotals
    #: Target -> client.
    toClient: FlowTotals


def _bufferMeter(transport: object) -> Callable[[], int]:
    """
    How to read the bytes waiting in a transport's write buffer.

    Twisted does not publish this, but every ``FileDescriptor`` (TCP, UNIX) keeps it in
    ``dataBuffer`` (from ``offset``) plus a list of ``_tempDataLen`` bytes not yet joined.
    Other transports (TLS) report 0: their buffering is theirs to bound.
    """
    if isinstance(transport, FileDescriptor):
        fd = transport

        def meter() -> int:
            return len(fd.dataBuffer) - fd.offset + int(getattr(fd, "_tempDataLen", 0))

        return meter
    return lambda: 0


def _isTCP(transport: Any) -> bool:
    if isinstance(transport, tcp.Connection):
        # The socket's family: cheaper than getHost(), which builds an address object.
        return transport.getHandle().family in (socket.AF_INET, socket.AF_INET6)
    return isinstance(transport.getHost(), (IPv4Address, IPv6Address))  # TLS and others


def _isPlainSocket(transport: object) -> bool:
    return isinstance(transport, tcp.Connection) and isinstance(
        transport.getHandle(), socket.socket
    )


@implementer(IPushProducer)
class _Pump:
    """
    One direction of the portable path, registered as the streaming producer of the
    writing transport, pausing and resuming the reading transport.

    A Twisted transport uses one ``bufferSize`` both as its read size and as the buffer
    level at which it pauses its producer, and calls ``pauseProducing`` on every write
    above that level. We keep reads at ``chunk`` bytes but take the pause only once
    another chunk could take the buffer past ``limit``: so a direction holds at most
    ``limit`` bytes, without pausing every other read. The transport resumes us when its
    buffer is empty. For transports whose buffer we cannot see (TLS) every pause is taken.
    """

    def __init__(self, flow: Flow, source: _Side, sink: _Transport, limit: int, chunk: int) -> None:
        self.flow = flow
        self.source = source
        self.sink = sink
        self.pauser = Pauser(source.tr.pauseProducing, self._resumeSource)
        self._full: Pause | None = None  # held while the sink is full
        self.measure = _bufferMeter(sink)
        self.known = isinstance(sink, FileDescriptor)
        self.highWatermark = limit - chunk
        flow.measure = self.measure
        flow.pauser = self.pauser

    @property
    def paused(self) -> bool:
        return self.pauser.paused

    def write(self, data: bytes) -> None:
        flow = self.flow
        flow.bytes += len(data)
        self.sink.write(data)
        # The buffer only shrinks between writes, so right after one is where it peaks.
        held = self.measure()
        if held > flow.peakBuffered:
            flow.peakBuffered = held

    def _resumeSource(self) -> None:
        # A transport whose reading has ended must not start reading again: it would see
        # its end of stream a second time.
        if not (self.source.readDone or self.source.lost):
            self.source.tr.resumeProducing()

    def pauseProducing(self) -> None:
        if self.known and self.measure() <= self.highWatermark:
            return  # room for one more read: keep going
        if self._full is None:
            self.flow.pauses += 1
            self._full = self.pauser.pause("the writing side is full")

    def resumeProducing(self) -> None:
        full, self._full = self._full, None
        if full is not None:
            full.unpause()

    def stopProducing(self) -> None:
        # The writing side went away; RelayedConnection decides what happens to the other.
        pass


@implementer(IHalfCloseableProtocol)
class _Side(Protocol):
    """The protocol on either socket of a relayed connection."""

    tr: _Transport

    def __init__(self, conn: RelayedConnection, isClient: bool) -> None:
        self.conn = conn
        self.isClient = isClient
        self.pump: _Pump | None = None  # the direction this side reads for
        self.readDone = False
        self.writeDone = False
        self.lost = False

    def connectionMade(self) -> None:
        self.tr = cast(_Transport, self.transport)
        # Read nothing until both ends are there and the relay path is chosen.
        self.tr.pauseProducing()
        try:
            if self.isClient:
                self.conn._clientConnected(self)
            else:
                self.conn._targetConnected(self)
        except Exception:
            # A bug must not leave a paused client hanging: log it and close both.
            log.failure("relay could not set up a connection", currentFailure())
            self.conn.abort()

    def dataReceived(self, data: bytes) -> None:
        pump = self.pump
        if pump is not None:
            pump.write(data)
        else:
            # Only a wrapping endpoint can deliver data while we are paused.
            conn = self.conn
            if conn._early is None:
                conn._early = ByteFIFO()
            conn._early.append(data)

    def readConnectionLost(self) -> None:
        self.conn._readEnded(self)

    def writeConnectionLost(self) -> None:
        self.conn._writeEnded(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.conn._sideLost(self, reason)


class _TargetFactory(Factory):
    # Twisted logs "Starting factory" / "Stopping factory" for every dial of a noisy
    # factory: two log events per relayed connection, a sixth of its cost.
    noisy = False

    def __init__(self, conn: RelayedConnection) -> None:
        self.conn = conn

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        return _Side(self.conn, isClient=False)


class RelayedConnection:
    """
    One accepted connection and the connection dialled for it.

    :ivar toTarget: the :class:`Flow` counters of the client -> target direction.
    :ivar toClient: the :class:`Flow` counters of the target -> client direction.
    :ivar spliced: whether the splice path relays it.
    """

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.toTarget = Flow()
        self.toClient = Flow()
        self.spliced = False
        self._state = _DIALLING
        self._client: _Side | None = None
        self._target: _Side | None = None
        self._dial: Deferred[Any] | None = None  # dialling through the endpoint
        self._dialer: Dial | None = None  # dialling a plain TCP target ourselves
        self._targetSock: socket.socket | None = None  # the socket it connected
        self._clientSock: socket.socket | None = None  # an accepted socket, no transport
        self._engine: SocketRelay | None = None
        self._early: ByteFIFO | None = None  # data a wrapping endpoint delivered early
        self._finished = False
        self._aborted = False
        self._waiters: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return f"<RelayedConnection {self._state} spliced={self.spliced}>"

    @property
    def state(self) -> str:
        """``"dialling"``, ``"relaying"`` or ``"closing"``."""
        return self._state

    def inspectState(self) -> dict[str, Any]:
        """What :mod:`pcpkit.inspect` shows of this connection (both ends, both directions)."""

        def peer(side: _Side | None) -> str | None:
            if side is None or side.lost:
                return None
            addr: Any = side.tr.getPeer()
            return f"{getattr(addr, 'host', addr)}:{getattr(addr, 'port', '')}"

        return {
            "state": self._state,
            "spliced": self.spliced,
            "client": peer(self._client),
            "target": peer(self._target),
        }

    def whenClosed(self) -> Deferred[None]:
        """A ``Deferred`` that fires once both sockets are closed."""
        if self._finished:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def abort(self) -> None:
        """Close both sides now, dropping whatever is buffered."""
        # Also when already closing: a graceful close may be waiting on a peer that never
        # reads, and stop() must not wait for it.
        if self._aborted:
            return
        self._aborted = True
        self._state = _CLOSING
        if self._engine is not None:
            self._engine.abort()
            self._endEngine()
        if self._dialer is not None:
            self._dialer.cancel()
            self._dialer = None
        if self._dial is not None:
            self._dial.cancel()
        self._closeTargetSocket(reset=True)
        self._closeClientSocket(reset=True)
        for side in (self._client, self._target):
            if side is not None and not side.lost:
                side.tr.abortConnection()
        self._checkFinished()

    # -- wiring -------------------------------------------------------------------------

    def _clientConnected(self, side: _Side) -> None:
        self._client = side
        relay = self.relay
        raw = relay._rawTarget
        if raw is not None and _isPlainSocket(side.tr):
            # Both ends plain sockets: dial without a transport, the relay moves the bytes.
            self._dialRaw(raw)
            return
        try:
            d = relay.connectEndpoint.connect(_TargetFactory(self))
        except Exception:
            self._dialFailed(currentFailure())
            return
        self._dial = d
        d.addCallbacks(self._dialled, self._dialFailed)

    def _rawAccepted(self, sock: socket.socket) -> None:
        """Relay ``sock`` (accepted by the relay, no transport) to a new TCP connection."""
        self._clientSock = sock
        raw = self.relay._rawTarget
        assert raw is not None  # the acceptor runs only then
        self._dialRaw(raw)

    def _dialRaw(self, target: _RawTarget) -> None:
        family, address, bindAddress, timeout = target
        try:
            self._dialer = dialer = Dial(
                self.relay.reactor,
                family,
                address,
                bindAddress,
                timeout,
                self._rawConnected,
                self._dialFailed,
            )
        except Exception:
            self._dialFailed(currentFailure())
            return
        dialer.start()

    def _dialled(self, protocol: object) -> None:
        # _targetConnected has already run (from connectionMade).
        self._dial = None
        self._checkFinished()

    def _dialFailed(self, reason: Failure) -> None:
        self._dial = None
        self._dialer = None
        if self._state != _DIALLING:
            self._checkFinished()  # cancelled by abort()
            return
        self._state = _CLOSING
        self.relay._failedDials += 1
        log.warn(
            "could not connect to {target}: {reason}",
            target=self.relay.connectDescription,
            reason=reason.getErrorMessage(),
        )
        client = self._client
        if client is not None and not client.lost:
            client.tr.loseConnection()
        self._closeClientSocket(reset=False)
        self._checkFinished()

    def _rawConnected(self, sock: socket.socket) -> None:
        self._dialer = None
        self._targetSock = sock
        client = self._client
        clientSock = self._clientSock
        if clientSock is None:
            if self._state != _DIALLING or client is None or client.lost:
                self._closeTargetSocket(reset=True)
                self._checkFinished()
                return
            clientSock = cast(tcp.Connection, client.tr).getHandle()
        elif self._state != _DIALLING:
            self._closeTargetSocket(reset=True)
            self._checkFinished()
            return
        self._state = _RELAYING
        # Do not add Nagle's delay on top of what the endpoints chose.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if clientSock.family != socket.AF_UNIX:
            clientSock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._startEngine(clientSock, sock)

    def _targetConnected(self, target: _Side) -> None:
        self._target = target
        client = self._client
        if self._state != _DIALLING or client is None or client.lost:
            target.tr.abortConnection()
            return
        self._state = _RELAYING
        for side in (client, target):
            # Do not add Nagle's delay on top of what the endpoints chose.
            if _isTCP(side.tr):
                setNoDelay = getattr(side.tr, "setTcpNoDelay", None)
                if setNoDelay is not None:
                    setNoDelay(True)
        if (
            self.relay._rawSockets
            and not self._early
            and not client.readDone
            and _isPlainSocket(client.tr)
            and _isPlainSocket(target.tr)
        ):
            self._startEngine(
                cast(tcp.Connection, client.tr).getHandle(),
                cast(tcp.Connection, target.tr).getHandle(),
            )
        else:
            self._startPortable(client, target)

    def _startEngine(self, clientSock: socket.socket, targetSock: socket.socket) -> None:
        relay = self.relay
        splice = relay._useSplice
        self._engine = engine = SocketRelay(
            relay.reactor,
            clientSock,
            targetSock,
            relay.bufferSize,
            self.toTarget,
            self.toClient,
            self._engineDone,
            splice=splice,
            pool=relay._pool,
        )
        if splice:
            self.spliced = True
            relay._spliced += 1
        engine.start()

    def _startPortable(self, client: _Side, target: _Side) -> None:
        chunk = self.relay._chunkSize
        for side in (client, target):
            if isinstance(side.tr, FileDescriptor):
                side.tr.bufferSize = chunk
        limit = self.relay.bufferSize
        client.pump = up = _Pump(self.toTarget, client, target.tr, limit, chunk)
        target.pump = down = _Pump(self.toClient, target, client.tr, limit, chunk)
        target.tr.registerProducer(up, True)
        client.tr.registerProducer(down, True)
        for data in self._early.popAll() if self._early else ():
            up.write(data)
        if client.readDone:
            self._propagateEnd(client)
        elif not up.paused:
            client.tr.resumeProducing()
        target.tr.resumeProducing()

    # -- the portable path's life cycle -------------------------------------------------

    def _other(self, side: _Side) -> _Side | None:
        return self._target if side is self._client else self._client

    def _readEnded(self, side: _Side) -> None:
        side.readDone = True
        if self._state == _RELAYING:
            self._propagateEnd(side)

    def _propagateEnd(self, source: _Side) -> None:
        """``source`` sent its end of stream: end the other side's writing after the flush."""
        sink = self._other(source)
        if sink is None or sink.lost:
            return
        sink.tr.unregisterProducer()
        loseWriteConnection = getattr(sink.tr, "loseWriteConnection", None)
        if loseWriteConnection is not None:
            loseWriteConnection()
        else:
            # Cannot half-close this transport: close it once it has flushed.
            sink.tr.loseConnection()
        self._closeIfDone(source)

    def _writeEnded(self, side: _Side) -> None:
        side.writeDone = True
        self._closeIfDone(side)

    def _closeIfDone(self, side: _Side) -> None:
        if side.readDone and side.writeDone and not side.lost:
            side.tr.loseConnection()

    def _sideLost(self, side: _Side, reason: Failure) -> None:
        side.lost = True
        if self._state == _RELAYING and not (side.readDone and side.writeDone):
            # Gone before both of its directions ended: a reset, an error, or an end of
            # stream on a transport that cannot half-close.
            self._state = _CLOSING
            log.debug(
                "{which} side closed early: {reason}",
                which="client" if side.isClient else "target",
                reason=reason.getErrorMessage(),
            )
            other = self._other(side)
            if other is not None and not other.lost:
                if isinstance(reason.value, ConnectionDone):
                    other.tr.unregisterProducer()
                    other.tr.loseConnection()
                else:
                    other.tr.abortConnection()
        elif self._state == _DIALLING:
            self._state = _CLOSING
            if self._dialer is not None:
                self._dialer.cancel()
                self._dialer = None
            if self._dial is not None:
                self._dial.cancel()
        self._checkFinished()

    # -- the raw-socket path's end ------------------------------------------------------

    def _endEngine(self) -> None:
        # Freeze what the flows report: the buffers are gone.
        self.toTarget.measure = self.toClient.measure = _nothing
        self._engine = None

    def _closeTargetSocket(self, reset: bool) -> None:
        sock, self._targetSock = self._targetSock, None
        if sock is not None:
            closeSocket(sock, reset)

    def _closeClientSocket(self, reset: bool) -> None:
        sock, self._clientSock = self._clientSock, None
        if sock is not None:
            closeSocket(sock, reset)

    def _engineDone(self, reason: Failure | None) -> None:
        self._endEngine()
        self._state = _CLOSING
        self._closeTargetSocket(reset=reason is not None)
        self._closeClientSocket(reset=reason is not None)
        for side in (self._client, self._target):
            if side is None or side.lost:
                continue
            if reason is None:
                side.readDone = side.writeDone = True
                _closeShutDown(side.tr)
            else:
                side.tr.abortConnection()
        if reason is not None:
            log.debug("relayed connection failed: {reason}", reason=reason.getErrorMessage())
        self._checkFinished()

    def _checkFinished(self) -> None:
        if (
            self._finished
            or self._dial is not None
            or self._dialer is not None
            or self._targetSock is not None
            or self._clientSock is not None
        ):
            return
        for side in (self._client, self._target):
            if side is not None and not side.lost:
                return
        self._finished = True
        self._state = _CLOSING
        for flow in (self.toTarget, self.toClient):
            flow.measure = _nothing
            flow.pauser = None
        # Break the cycles (sides <-> connection, pumps <-> sides) so that a closed
        # connection is freed by reference counting: left to the cyclic collector, ~30
        # objects a connection cost a sixth of the relay's time in a connection storm.
        for side in (self._client, self._target):
            if side is not None:
                side.pump = None
        self._client = self._target = None
        self.relay._connectionFinished(self)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


def _nothing() -> int:
    return 0


def _closeShutDown(transport: _Transport) -> None:
    """
    Close a transport whose socket has ended both ways under the raw-socket path (its end
    of stream read, our side shut down for writing): at once, as Twisted's own
    ``loseConnection`` does for a transport whose writing is closed, rather than a reactor
    turn later through a write event. Nothing is buffered: the transport was idle.
    """
    tr: Any = transport  # Twisted's FileDescriptor is untyped
    if isinstance(transport, tcp.Connection) and tr.connected and not tr.disconnecting:
        tr.stopReading()
        tr.stopWriting()
        tr.connectionLost(connectionDone)  # Twisted's shared ConnectionDone failure
        return
    tr.loseConnection()


@implementer(IReadDescriptor)
class _Acceptor:
    """
    Accepts on a listening port's socket in its place, when the relay moves the bytes and
    dials the target itself: an accepted socket goes straight to a
    :class:`RelayedConnection`, without the Twisted transport, protocol and addresses that
    ``Port.doRead`` would build for it. The port keeps owning its socket (``getHost``,
    ``stopListening``); the acceptor only takes over its reading.
    """

    #: Accepts per reactor turn at most (Twisted's ports accept up to 100 too).
    batch = 100

    def __init__(self, relay: Relay, port: tcp.Port) -> None:
        self.relay = relay
        self.reactor = relay.reactor
        listening: Any = port  # Twisted's ports are untyped
        self.port = listening
        self.sock: socket.socket = listening.socket
        self.fd: int = self.sock.fileno()
        self.starved = False  # out of descriptors: wait for a connection to close
        self._retry: Any = None
        listening.stopReading()
        self.reactor.addReader(self)

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "pcpkit.relay"

    def doRead(self) -> None:
        accept = self.sock.accept
        acceptRaw = self.relay._acceptRaw
        for _ in range(self.batch):
            try:
                sock, peer = accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ECONNABORTED:
                    continue  # gone before we took it
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Polling a listening socket we cannot accept from spins: wait for a
                    # connection to close instead.
                    log.warn(
                        "relay cannot accept connections for now ({error}); waiting for one"
                        " to close",
                        error=e.strerror,
                    )
                    self.starved = True
                    self.reactor.removeReader(self)
                    # ... or a second, if what holds the descriptors is not a connection.
                    self._retry = self.reactor.callLater(1.0, self.resume)
                    return
                raise
            sock.setblocking(False)
            acceptRaw(sock, peer)

    def resume(self) -> None:
        if self.starved:
            self.starved = False
            self._cancelRetry()
            self.reactor.addReader(self)

    def _cancelRetry(self) -> None:
        retry, self._retry = self._retry, None
        if retry is not None and retry.active():
            retry.cancel()

    def connectionLost(self, reason: Failure) -> None:
        # In the port's place for the reactor: its shutdown (disconnectAll), an error on the
        # socket or one raised by doRead end the port as they would have without us.
        self.port.connectionLost(reason)

    def stop(self) -> None:
        self.starved = False
        self._cancelRetry()
        self.reactor.removeReader(self)


class _RelayFactory(Factory):
    noisy = False

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        return self.relay._accept(addr)


class Relay(Service):
    """
    Forward every connection accepted on ``listen`` to a new connection to ``connect``.

    :param listen: a server endpoint string (``serverFromString``), e.g.
        ``"tcp:8080:interface=127.0.0.1"``, or an ``IStreamServerEndpoint``. A bare port
        (``8080`` or ``"8080"``) means ``tcp:8080:interface=127.0.0.1``: loopback only;
        ``HOST:PORT`` listens on that interface. An endpoint string is taken as Twisted
        defines it (``"tcp:8080"`` listens on every interface).
    :param connect: a client endpoint string (``clientFromString``), e.g.
        ``"tcp:127.0.0.1:80"``, ``HOST:PORT``, or an ``IStreamClientEndpoint``.
    :param bufferSize: the most bytes the relay holds per direction of a connection.
    :param maxConnections: connections open at once; one more is accepted and closed at once
        (without reading from it), and the refusals are logged. At :meth:`start` the process's
        open-files soft limit is raised to its hard limit, and ``maxConnections`` is lowered
        (once, with a log line) to what that limit allows: each connection takes 2
        descriptors, up to 6 on the splice path (a pipe for a direction that carries a bulk
        transfer or whose sink falls behind).
    :param backlog: the listen queue of a TCP or UNIX ``listen`` endpoint string that does not
        set one (``backlog=N``): a burst of connections waits there to be accepted.
    :param splice: ``None`` (default): use the ``os.splice`` path when the platform has it and
        both endpoints are plain TCP or UNIX; ``True``: insist on it (``ValueError`` for other
        endpoints, ``RuntimeError`` on a platform without ``os.splice``); ``False``: always
        relay through Python (a ring buffer per direction on plain sockets).
    :param reactor: the reactor to use; the global one by default.
    """

    def __init__(
        self,
        listen: str | int | IStreamServerEndpoint,
        connect: str | IStreamClientEndpoint,
        bufferSize: int = 262144,
        maxConnections: int = 256,
        *,
        backlog: int = DEFAULT_BACKLOG,
        splice: bool | None = None,
        reactor: Any = None,
    ) -> None:
        if bufferSize < MIN_BUFFER:
            raise ValueError(f"bufferSize must be at least {MIN_BUFFER} bytes, not {bufferSize!r}")
        if maxConnections < 1:
            raise ValueError(f"maxConnections must be at least 1, not {maxConnections!r}")
        self.reactor: Any = getReactor() if reactor is None else reactor
        if isinstance(listen, (str, int)):
            listen = listenDescription(listen)
        if isinstance(connect, str):
            connect = connectDescription(connect)
        self.listenDescription = listen if isinstance(listen, str) else repr(listen)
        self.connectDescription = connect if isinstance(connect, str) else repr(connect)
        # Any: zope interfaces are opaque to mypy (their methods have no ``self``).
        self.listenEndpoint: Any = (
            serverEndpoint(_withBacklog(listen, backlog), self.reactor)
            if isinstance(listen, str)
            else listen
        )
        self.connectEndpoint: Any = (
            clientEndpoint(connect, self.reactor) if isinstance(connect, str) else connect
        )
        self.bufferSize = bufferSize
        self.maxConnections = maxConnections
        plain = isinstance(self.listenEndpoint, _PLAIN_SERVERS) and isinstance(
            self.connectEndpoint, _PLAIN_CLIENTS
        )
        if splice:
            if not spliceAvailable():
                raise RuntimeError("splice=True: this platform has no os.splice (Linux only)")
            if not plain:
                raise ValueError(
                    "splice=True needs plain TCP or UNIX endpoints on both sides, not "
                    f"{self.listenDescription!r} -> {self.connectDescription!r}"
                )
        self._useSplice = splice is not False and plain and spliceAvailable()
        # Plain sockets at both ends: the relay moves the bytes itself (splice or copy) and
        # dials a TCP target by IP address without a Twisted transport.
        self._rawSockets = plain and rawSocketsAvailable(self.reactor)
        self._rawTarget = _rawTarget(self.connectEndpoint) if self._rawSockets else None
        self._pool = Pool(keep=0, scratchSize=bufferSize)  # opened by start()
        self._acceptor: _Acceptor | None = None
        # The read size of each transport on the portable path. Twisted's default of 64 KiB
        # is the fastest measured: bigger reads make bigger ``bytes`` objects, which glibc
        # maps and unmaps page by page (twice the CPU per byte at 128 KiB).
        self._chunkSize = min(65536, bufferSize // 2)
        self._port: Any = None
        self._starting: Deferred[IListeningPort] | None = None
        self._listenWaiters: list[Deferred[IListeningPort]] = []
        self._listenFailure: Failure | None = None
        self._stopping: Deferred[None] | None = None
        self._connections: set[RelayedConnection] = set()
        self._total = 0
        self._refused = 0
        self._refusedInEpisode = 0
        self._failedDials = 0
        self._spliced = 0
        self._fileLimitChecked = False
        self._closedToTarget = Flow()
        self._closedToClient = Flow()
        if inspectHook is not None:
            inspectHook(self)

    def __repr__(self) -> str:
        return f"<Relay {self.listenDescription} -> {self.connectDescription}>"

    # -- public surface -----------------------------------------------------------------

    @property
    def port(self) -> IListeningPort | None:
        """The listening port once :meth:`start` has succeeded (``None`` before and after)."""
        return cast("IListeningPort | None", self._port)

    @property
    def usesSplice(self) -> bool:
        """Whether connections will be relayed with ``os.splice``."""
        return self._useSplice

    @property
    def listening(self) -> Deferred[IListeningPort]:
        """A new ``Deferred`` that fires with the listening port (at once if listening)."""
        if self._port is not None:
            return succeed(self._port)
        d: Deferred[IListeningPort] = Deferred()
        if self._listenFailure is not None:
            d.errback(self._listenFailure)
        else:
            self._listenWaiters.append(d)
        return d

    @property
    def connections(self) -> tuple[RelayedConnection, ...]:
        """The connections open now."""
        return tuple(self._connections)

    @property
    def stats(self) -> RelayStats:
        """The counters now: open and total connections, bytes and pauses each way."""
        conns = self._connections

        def totals(closed: Flow, flows: list[Flow]) -> FlowTotals:
            return FlowTotals(
                bytes=closed.bytes + sum(f.bytes for f in flows),
                pauses=closed.pauses + sum(f.pauses for f in flows),
                peakBuffered=max([closed.peakBuffered, *(f.peakBuffered for f in flows)]),
                buffered=sum(f.buffered for f in flows),
            )

        return RelayStats(
            active=len(conns),
            total=self._total,
            refused=self._refused,
            failedDials=self._failedDials,
            spliced=self._spliced,
            toTarget=totals(self._closedToTarget, [c.toTarget for c in conns]),
            toClient=totals(self._closedToClient, [c.toClient for c in conns]),
        )

    def start(self) -> Deferred[IListeningPort]:
        """Start listening; the ``Deferred`` fires with the ``IListeningPort``."""
        if self._starting is not None or self._port is not None:
            raise RuntimeError(f"{self!r} is already started")
        self._stopping = None
        self._listenFailure = None
        self._fitFileLimit()
        self._pool.keep = _POOL_KEEP
        d: Deferred[IListeningPort] = self.listenEndpoint.listen(_RelayFactory(self))
        self._starting = d

        def listening(port: IListeningPort) -> IListeningPort:
            self._starting = None
            self._port = port
            if self._rawTarget is not None and isinstance(port, tcp.Port):
                # Accept the connections ourselves: no Twisted transport per connection.
                self._acceptor = _Acceptor(self, port)
            log.info(
                "relay listening on {address}, forwarding to {target}"
                " ({path} path, {bufferSize} bytes per direction)",
                address=self._port.getHost(),
                target=self.connectDescription,
                path="splice" if self._useSplice else "portable",
                bufferSize=self.bufferSize,
            )
            waiters, self._listenWaiters = self._listenWaiters, []
            for w in waiters:
                w.callback(port)
            return port

        def failed(reason: Failure) -> Failure:
            self._starting = None
            self._listenFailure = reason
            waiters, self._listenWaiters = self._listenWaiters, []
            for w in waiters:
                w.errback(reason)
            return reason

        return d.addCallbacks(listening, failed)

    def stop(self) -> Deferred[None]:
        """
        Stop listening and abort every relayed connection.

        The ``Deferred`` fires once the port is closed and every connection's sockets are,
        so the reactor is left clean.
        """
        if self._stopping is not None:
            return _chain(self._stopping)
        waits: list[Deferred[Any]] = []
        if self._starting is not None:
            self._starting.addErrback(lambda _: None)
            self._starting.cancel()
        if self._acceptor is not None:
            self._acceptor.stop()
            self._acceptor = None
        if self._port is not None:
            port, self._port = self._port, None
            waits.append(maybeDeferred(port.stopListening))
        for conn in list(self._connections):
            waits.append(conn.whenClosed())
            conn.abort()
        # After the aborts, which give their connections' pipes back.
        self._pool.close()
        done: Deferred[None] = gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)
        self._stopping = done
        return _chain(done)

    def privilegedStartService(self) -> None:
        """
        ``IService``: listen now, before twistd gives up its privileges.

        :raises twisted.internet.error.CannotListenError: (or whatever the endpoint raised)
            when listening failed at once, as it does for a TCP or UNIX port that is taken:
            a relay that cannot listen cannot do its job.
        """
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call,unused-ignore]
        failures: list[Failure] = []
        self.start().addErrback(failures.append)
        if failures:
            failures[0].raiseException()

    def startService(self) -> None:
        """``IService``: start listening (unless already); a later failure is logged."""
        Service.startService(self)  # type: ignore[no-untyped-call,unused-ignore]
        if self._starting is None and self._port is None:
            self.start().addErrback(
                lambda f: log.failure("relay {relay!r} could not listen", f, relay=self)
            )

    def stopService(self) -> Deferred[None]:
        """``IService``: :meth:`stop`."""
        self.running = 0
        return self.stop()

    def _fitFileLimit(self) -> None:
        """Raise the open-files soft limit to the hard one; cap maxConnections to it."""
        if self._fileLimitChecked:
            return
        self._fileLimitChecked = True
        try:
            import resource
        except ImportError:  # pragma: no cover - not on POSIX
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != soft:
            want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
            except (ValueError, OSError):
                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        perConnection = FDS_PER_CONNECTION if self._useSplice else 2
        reserved = _RESERVED_FDS
        allowed = max(1, (soft - reserved) // perConnection)
        if self.maxConnections > allowed:
            log.warn(
                "relay: {maxConnections} connections would need {needed} open files but "
                "the limit is {limit} (ulimit -n): capping max-connections at {allowed}",
                maxConnections=self.maxConnections,
                needed=self.maxConnections * perConnection + reserved,
                limit=soft,
                allowed=allowed,
            )
            self.maxConnections = allowed

    # -- called by the connections ------------------------------------------------------

    def _admit(self, peer: object) -> RelayedConnection | None:
        """A new connection, or ``None`` when stopping or at the cap (logged once)."""
        if self._stopping is not None:
            return None
        if len(self._connections) >= self.maxConnections:
            self._refused += 1
            if not self._refusedInEpisode:
                log.warn(
                    "relay at its cap of {maxConnections} connections: refusing {peer}"
                    " and any more until one closes",
                    maxConnections=self.maxConnections,
                    peer=peer,
                )
            self._refusedInEpisode += 1
            return None
        conn = RelayedConnection(self)
        self._connections.add(conn)
        self._total += 1
        return conn

    def _accept(self, addr: IAddress | None) -> Protocol | None:
        conn = self._admit(addr)
        if conn is None:
            # Twisted closes an accepted socket that gets no protocol, at once.
            return None
        return _Side(conn, isClient=True)

    def _acceptRaw(self, sock: socket.socket, peer: object) -> None:
        conn = self._admit(peer)
        if conn is None:
            sock.close()
            return
        conn._rawAccepted(sock)

    def _connectionFinished(self, conn: RelayedConnection) -> None:
        self._connections.discard(conn)
        if self._acceptor is not None and self._acceptor.starved:
            self._acceptor.resume()
        for closed, flow in (
            (self._closedToTarget, conn.toTarget),
            (self._closedToClient, conn.toClient),
        ):
            closed.bytes += flow.bytes
            closed.pauses += flow.pauses
            closed.peakBuffered = max(closed.peakBuffered, flow.peakBuffered)
        if self._refusedInEpisode:
            log.info(
                "relay below its cap again; {count} connection(s) were refused",
                count=self._refusedInEpisode,
            )
            self._refusedInEpisode = 0


def _rawTarget(endpoint: object) -> _RawTarget | None:
    """
    ``(family, address, bindAddress, timeout)`` to dial for a TCP client endpoint whose host
    is an IP address; ``None`` for anything else (names are left to the endpoint's lookup).
    """
    if type(endpoint) not in (TCP4ClientEndpoint, TCP6ClientEndpoint):
        return None
    host = getattr(endpoint, "_host", None)
    port = getattr(endpoint, "_port", None)
    if not isinstance(host, str) or not isinstance(port, int):
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    bindAddress = getattr(endpoint, "_bindAddress", None)
    timeout = getattr(endpoint, "_timeout", 30)
    return family, (host, port), bindAddress, timeout


def _withBacklog(description: str, backlog: int) -> str:
    """A TCP/UNIX server endpoint string with ``backlog=`` added unless it sets one."""
    kind = description.split(":", 1)[0].lower()
    if kind in ("tcp", "tcp6", "unix", "ssl") and "backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


def _chain(d: Deferred[None]) -> Deferred[None]:
    """A new ``Deferred`` that fires when ``d`` does, leaving ``d``'s result alone."""
    result: Deferred[None] = Deferred()

    def fire(value: object) -> object:
        result.callback(None)
        return value

    d.addBoth(fire)
    return result
