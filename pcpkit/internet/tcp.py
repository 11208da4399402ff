"""
Reactor-native TCP as components: :class:`TCPClient`, :class:`ServerCore` and
:class:`SimpleServer`.

Both use Twisted endpoints, so any endpoint string works (``tcp:``, ``tls:``, ``unix:``).
Back-pressure runs both ways with Twisted's own producer/consumer calls:

* socket -> ``outbox``: when the inbox downstream is full, the transport stops reading
  (:class:`~pcpkit.bridge.InboxConsumer`), and resumes when it has drained;
* ``inbox`` -> socket: when the transport's write buffer is full it pauses the component,
  which stops taking from its bounded ``inbox``, whose senders are then held back.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, error
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit._endpoints import clientEndpoint, serverEndpoint
from pcpkit._fifo import asBytes
from pcpkit._pause import Pause, Pauser
from pcpkit._twisted import connectProtocol, currentFailure, getReactor
from pcpkit.bridge import InboxConsumer, OutboxProducer
from pcpkit.component import Box, Component, Linkage, Stopped, linkBoxes, unlinkBoxes
from pcpkit.ipc import (
    ErrorInformation,
    Shutdown,
    ShutdownMicroprocess,
    SocketShutdown,
)

__all__ = ["TCPClient", "ServerCore", "SimpleServer", "CLOSE_TIMEOUT", "DEFAULT_INBOX_SIZE"]

_log = Logger()

#: Messages a TCP component's ``inbox`` holds before its senders are held back.
DEFAULT_INBOX_SIZE = 64
#: Seconds a stopping server gives its connections to write out what they hold; a peer that
#: reads nothing would otherwise keep it open (and the server unfinished) for good.
CLOSE_TIMEOUT = 10.0


@implementer(IPushProducer)
class _WriteGate:
    """
    Registered on the transport: tells the client when the socket's write buffer is full.

    The transport's ``pauseProducing`` takes a pause of :attr:`pauser` (it pauses the
    client's draining of its inbox); ``resumeProducing`` releases it and wakes the writer.
    """

    def __init__(self) -> None:
        self.pauser = Pauser(lambda: None, self._release)
        self._transportPause: Pause | None = None
        self._waiters: list[Deferred[None]] = []

    @property
    def paused(self) -> bool:
        return self.pauser.paused

    @property
    def pauses(self) -> int:
        return self.pauser.pauses

    def pauseProducing(self) -> None:
        if self._transportPause is None:
            self._transportPause = self.pauser.pause("transport write buffer full")

    def resumeProducing(self) -> None:
        p, self._transportPause = self._transportPause, None
        if p is not None:
            p.unpause()  # resumes: _release

    def stopProducing(self) -> None:
        self.resumeProducing()
        self._release()

    def _release(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def wait(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d


class _ClientProtocol(Protocol):
    def __init__(self, client: TCPClient) -> None:
        self.client = client

    def dataReceived(self, data: bytes) -> None:
        reader = self.client._reader
        if reader is not None:
            reader.write(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        assert reason is not None  # Twisted always passes one
        self.client._connectionLost(reason)


class TCPClient(Component):
    """
    A TCP (or any stream endpoint) connection as a component, with Kamaelia's signature.

    :param host: the server's name or address (with ``port``), or ``None`` with ``endpoint``.
    :param port: the server's port.
    :param delay: seconds to wait after activation before connecting (Kamaelia's ``delay``).
    :param connect_timeout: seconds the connection attempt may take before it is given up
        (an ``ErrorInformation`` then ``SocketShutdown``).
    :param wait_for_serverclose: if true, a ``ProducerFinished`` on ``control`` sends what is
        queued and then keeps the connection open, passing on what the server sends, until
        the server closes it (a ``ShutdownMicroprocess`` still aborts at once).
    :param initialsendmessage: (keyword only) bytes written as soon as the connection is made.
    :param endpoint: (keyword only) a client endpoint string (``"tls:example.com:443"``) or
        an ``IStreamClientEndpoint``, instead of ``host`` and ``port``.

    Messages:

    * ``inbox``: bytes to send (``str`` is refused with an ``ErrorInformation`` on ``signal``
      naming the type; the message is not sent).
    * ``control``: ``ProducerFinished`` -- send everything already queued, then close (or,
      with ``wait_for_serverclose``, wait for the server to close); ``ShutdownMicroprocess``
      -- abort the connection at once, or give up the attempt while still connecting.
    * ``outbox``: bytes received, in order.
    * ``signal``: an ``ErrorInformation`` for each error (refused, reset, DNS failure,
      timeout, messages left unsent), then exactly one ``SocketShutdown``; then the component
      finishes.
    """

    Inboxes = {
        "inbox": "bytes to send",
        "control": "ProducerFinished: send what is queued, then close; "
        "ShutdownMicroprocess: abort now",
        "_connected": "internal: the connection attempt has ended",
    }
    Outboxes = {
        "outbox": "bytes received",
        "signal": "ErrorInformation for errors, then exactly one SocketShutdown",
    }

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        delay: float = 0,
        connect_timeout: float = 60,
        wait_for_serverclose: bool = False,
        *,
        initialsendmessage: bytes | None = None,
        endpoint: Any = None,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        if endpoint is None and (host is None or port is None):
            raise TypeError("TCPClient needs host and port, or endpoint=")
        for name, value in (("delay", delay), ("connect_timeout", connect_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"TCPClient {name} must be a number of seconds, not "
                    f"{type(value).__name__} {value!r} (initialsendmessage and endpoint "
                    "are keyword-only)"
                )
        if delay < 0:
            raise ValueError(f"TCPClient delay must be >= 0, not {delay}")
        if connect_timeout <= 0:
            raise ValueError(f"TCPClient connect_timeout must be > 0, not {connect_timeout}")
        if initialsendmessage is not None:
            initialsendmessage = asBytes(initialsendmessage, "initialsendmessage")
        self.host = host
        self.port = port
        self.delay = delay
        self.connect_timeout = connect_timeout
        self.wait_for_serverclose = bool(wait_for_serverclose)
        self.initialsendmessage = initialsendmessage
        self.endpoint = endpoint
        self.transport: Any = None
        self._reader: InboxConsumer | None = None
        self._gate = _WriteGate()
        self._attempt: Any = None
        self._lost: Failure | None = None
        self._closed: Deferred[None] = Deferred()
        self._aborting = False
        self.bytesSent = 0
        self.setInboxSize("inbox", DEFAULT_INBOX_SIZE, park=True)

    def __str__(self) -> str:
        return f"TCPClient #{self.id} to {self._describe()}"

    def _describe(self) -> str:
        if self.endpoint is not None:
            return str(self.endpoint)
        return f"{self.host}:{self.port}"

    def _makeEndpoint(self) -> Any:
        if isinstance(self.endpoint, str):
            return clientEndpoint(self.endpoint)
        if self.endpoint is not None:
            return self.endpoint
        assert self.host is not None and self.port is not None
        return HostnameEndpoint(getReactor(), self.host, self.port, timeout=self.connect_timeout)

    def inspectWaitsOn(self) -> tuple[object, str] | None:
        """For :mod:`pcpkit.inspect`: what this client waits on while it does not drain."""
        if self._gate.paused and self.transport is not None:
            return self.transport, "its socket's write buffer is full"
        return None

    @property
    def writePauses(self) -> int:
        """How many times the transport's full write buffer paused this client."""
        return self._gate.pauses

    @property
    def readPauses(self) -> int:
        """How many times a full inbox downstream paused the transport's reading."""
        return self._reader.pauses if self._reader is not None else 0

    def _error(self, message: str, failure: Failure | None = None) -> None:
        self._forceSend(ErrorInformation(self, message=message, failure=failure), "signal")

    async def _connect(self) -> _ClientProtocol:
        """Wait ``delay``, then connect within ``connect_timeout`` (any endpoint)."""
        reactor = getReactor()
        if self.delay > 0:
            await deferLater(reactor, self.delay)
        d = connectProtocol(self._makeEndpoint(), _ClientProtocol(self))
        d.addTimeout(self.connect_timeout, reactor)
        proto: _ClientProtocol = await d
        return proto

    def _attempted(self, outcome: Any) -> None:
        self._attempt = outcome
        # Wakes main's get("_connected"), which a ShutdownMicroprocess also interrupts.
        # (In a tuple: a Failure handed to a Deferred's callback would become its errback.)
        self.inboxes["_connected"].forceDeliver((outcome,))

    async def main(self) -> None:
        connecting = ensureDeferred(self._connect())
        connecting.addBoth(self._attempted)
        try:
            (outcome,) = await self.get("_connected")
        except Stopped:
            connecting.cancel()  # the delay, or the connection attempt
            if isinstance(self._attempt, _ClientProtocol):
                # connected in the same turn as the stop: close what we got
                self._aborting = True
                connected: Any = self._attempt.transport
                connected.abortConnection()
                await self._closed
            self._forceSend(SocketShutdown(self), "signal")
            return
        if isinstance(outcome, Failure):
            if outcome.check(
                defer.TimeoutError, error.TimeoutError, error.ConnectingCancelledError
            ):  # type: ignore[no-untyped-call,unused-ignore]
                reason = f"no connection within {self.connect_timeout} s"
            else:
                reason = str(outcome.value)
            self._error(f"cannot connect to {self._describe()}: {reason}", outcome)
            self._forceSend(SocketShutdown(self), "signal")
            return
        proto = outcome
        transport = self.transport = proto.transport
        self._reader = InboxConsumer(self, "outbox", outbox=True)
        self._reader.registerProducer(transport, True)
        transport.registerProducer(self._gate, True)
        if self.initialsendmessage:
            transport.write(self.initialsendmessage)
            self.bytesSent += len(self.initialsendmessage)

        unsent = 0
        async for msg in self.messages("inbox"):
            if self._lost is not None:
                unsent += 1
                continue
            try:
                data = asBytes(msg, "a message for TCPClient's inbox")
            except TypeError as e:
                self._error(f"not sent: {e}")
                continue
            if self._gate.paused:
                await self._gate.wait()
                if self._lost is not None:
                    unsent += 1
                    continue
            transport.write(data)
            self.bytesSent += len(data)

        if self._lost is None:
            transport.unregisterProducer()
            if isinstance(self.shutdownMessage, ShutdownMicroprocess):
                self._aborting = True
                transport.abortConnection()
            elif self.wait_for_serverclose:
                await self._untilServerCloses()
            else:
                transport.loseConnection()
            await self._closed
        lost = self._lost
        assert lost is not None
        if not isinstance(lost.value, ConnectionDone) and not self._aborting:
            self._error(f"connection to {self._describe()} lost: {lost.value}", lost)
        unsent += self.dataReady("inbox")
        if unsent:
            self._error(f"{unsent} queued messages not sent: the connection closed")
        self._forceSend(SocketShutdown(self), "signal")

    async def _untilServerCloses(self) -> None:
        """Keep reading until the server closes; a ``ShutdownMicroprocess`` aborts."""
        while self._lost is None:
            msg = await self.get("control")  # _connectionLost puts a SocketShutdown here
            if isinstance(msg, ShutdownMicroprocess) and self._lost is None:
                self.shutdownMessage = msg
                self._aborting = True
                self.transport.abortConnection()
                return

    def _connectionLost(self, reason: Failure) -> None:
        self._lost = reason
        if self._reader is not None:
            self._reader.unregisterProducer()
        self._gate._release()
        # Wake the inbox loop: the peer went away, nothing more can be sent.
        self.inboxes["control"].forceDeliver(SocketShutdown(self, "peer closed"))
        self._closed.callback(None)


@implementer(IHalfCloseableProtocol)
class _ConnectionHandler(Protocol):
    """
    One accepted connection, wired to one ``protocol()`` component.

    The peer's end of input (a half-close: ``nc -N``, ``shutdown(SHUT_WR)``) is not the end
    of the connection: the component gets its ``SocketShutdown`` then, and the connection
    stays open for its answer until it ends or signals a ``Shutdown`` (:meth:`close`).
    """

    _paused = False
    _queued = False

    def __init__(self, server: ServerCore) -> None:
        self.server = server
        self.component: Component | None = None
        self.reader: InboxConsumer | None = None
        self.writer: OutboxProducer | None = None
        self.signals = Box(self, "signal->connection", True)
        self.closing = False
        self.lost: Deferred[None] = Deferred()
        # Kamaelia's "serversignal" outbox of the component, linked to the server's control
        self.serverLink: Linkage | None = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        info = _socketInfo(transport)
        try:
            comp = self.server.mkProtocolHandler(**info)
        except Exception:
            # a SimpleServer-style factory given to ServerCore, say: one line, this
            # connection closed, the server goes on
            _log.failure(
                "{server} protocol factory failed for the connection from {peer}:{peerport}",
                server=type(self.server).__name__,
                peer=info["peer"],
                peerport=info["peerport"],
            )
            transport.abortConnection()
            return
        if not isinstance(comp, Component):
            _log.error(
                "{server} protocol factory returned {what!r}, not a Component",
                server=type(self.server).__name__,
                what=comp,
            )
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self.component = comp
        self.server.connections.add(self)
        self.reader = InboxConsumer(comp, "inbox")
        self.reader.registerProducer(transport, True)
        self.writer = OutboxProducer(comp, "outbox", transport)
        linkBoxes(comp._outbox("signal"), self.signals, 0, comp)
        if "serversignal" in comp.outboxes:
            # Kamaelia's: a shutdown sent there stops the whole server
            self.serverLink = linkBoxes(
                comp.outboxes["serversignal"], self.server.inboxes["control"], 0, comp
            )
        comp.finished.addBoth(self._componentDone)
        comp.activate()

    def dataReceived(self, data: bytes) -> None:
        if self.reader is not None:
            self.reader.write(data)

    def _wake(self) -> None:
        # A message on the component's signal: a Shutdown of any kind closes the connection.
        while self.signals.queue:
            msg = self.signals.take()
            if isinstance(msg, Shutdown):
                self.close()
            elif isinstance(msg, ErrorInformation):
                _log.warn("{component} signalled {error}", component=self.component, error=msg)

    def _componentDone(self, result: Any) -> Any:
        self._unlinkServer()
        self.close()
        return None if isinstance(result, Failure) else result

    def _unlinkServer(self) -> None:
        # (else the server's control would keep every finished connection's outbox)
        link, self.serverLink = self.serverLink, None
        if link is not None:
            unlinkBoxes(link)

    def close(self) -> None:
        """Write what the component has sent, then close the connection."""
        if self.closing or self.writer is None:
            return
        self.closing = True
        writer = self.writer

        transport: Any = self.transport

        def drained(_: object) -> None:
            writer.stop()
            if transport is not None:
                transport.loseConnection()

        writer.whenDrained().addCallback(drained)

    def readConnectionLost(self) -> None:
        # The peer sent all it will send; it still reads what the component answers.
        self._peerGone("peer finished sending")

    def writeConnectionLost(self) -> None:
        # (Only after a loseWriteConnection, which this handler never calls.)
        pass

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.server.connections.discard(self)
        self._unlinkServer()
        if self.writer is not None:
            self.writer.stopProducing()
        self._peerGone("peer closed")
        self.lost.callback(None)

    def _peerGone(self, why: str) -> None:
        """Nothing more will be read: tell the component, once."""
        reader, self.reader = self.reader, None
        if reader is None:
            return
        reader.unregisterProducer()
        comp = self.component
        if comp is not None and not comp.finished.called:
            comp.inboxes["control"].final.forceDeliver(SocketShutdown(self, why))


def _socketInfo(transport: Any) -> dict[str, Any]:
    """Kamaelia's connection details (its fallback where the endpoint has no address)."""
    peer, local = transport.getPeer(), transport.getHost()
    if hasattr(peer, "port") and hasattr(local, "port"):
        return {
            "peer": peer.host,
            "peerport": peer.port,
            "localip": local.host,
            "localport": local.port,
        }
    return {"peer": "0.0.0.0", "peerport": 0, "localip": "127.0.0.1", "localport": 0}


def _checkSocketOptions(options: Any) -> list[tuple[Any, ...]]:
    """Kamaelia's ``socketOptions`` (one ``(level, option, value)`` or a list) as a list."""
    if options is None:
        return []
    listed = [options] if isinstance(options, tuple) else options
    if not isinstance(listed, list) or not all(
        isinstance(o, tuple)
        and len(o) == 3
        and isinstance(o[0], int)
        and isinstance(o[1], int)
        and isinstance(o[2], (int, bytes))
        for o in listed
    ):
        raise TypeError(
            "socketOptions must be a (level, option, value) tuple for setsockopt, or a list "
            f"of them, such as (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1); not {options!r}"
        )
    return listed


class _ServerFactory(Factory):
    def __init__(self, server: ServerCore) -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> _ConnectionHandler:
        return _ConnectionHandler(self.server)


class ServerCore(Component):
    """
    A listening socket that gives each connection its own component (Kamaelia's ServerCore).

    :param protocol: a callable returning a new :class:`~pcpkit.component.Component` for each
        connection, called with Kamaelia's keyword arguments ``peer``, ``peerport`` (the
        client's address and port), ``localip`` and ``localport`` (this end's), or
        ``"0.0.0.0"``, ``0``, ``"127.0.0.1"``, ``0`` where the endpoint has no addresses.
    :param port: the TCP port on 127.0.0.1 (0 picks a free one).
    :param endpoint: a server endpoint string instead (``"tcp:8080:interface=0.0.0.0"``).

    :param socketOptions: Kamaelia's: a ``(level, option, value)`` tuple for
        ``setsockopt`` (or a list of them), applied to the listening socket once it is bound
        (Twisted binds it, and already sets ``SO_REUSEADDR``); accepted connections inherit
        what the kernel passes on (on Linux ``SO_KEEPALIVE``, ``SO_RCVBUF``, ``TCP_NODELAY``,
        ...). An option the kernel refuses fails ``listening`` and the server with the
        ``OSError``, naming the option.

    As in Kamaelia, a subclass may set ``protocol`` and ``port`` as class attributes
    instead, and override :meth:`mkProtocolHandler`. Unlike Kamaelia's it listens on
    127.0.0.1 unless told otherwise, and its default port is a free one rather than 1601.
    Other keyword arguments become attributes, as for any component.

    A connection's component with a ``serversignal`` outbox (Kamaelia's) has it linked to the
    server's ``control`` while the connection lasts: a ``ShutdownMicroprocess`` sent there
    stops the whole server.

    For each connection: bytes from the socket arrive in the component's ``inbox`` (the
    socket stops reading while that inbox is full); what it sends out of ``outbox`` is written
    to the socket (its sends are held back while the socket is slow); ``SocketShutdown``
    reaches its ``control`` when the peer goes or has finished sending (a half-close, after
    which the peer still reads the answer); any ``Shutdown`` on its ``signal`` (such as
    ``ProducerFinished``), or the component finishing, closes the connection after what it
    sent has been written.

    A factory that raises, or returns something that is not a component, costs only that
    connection (aborted, with one log line).

    ``listening`` fires with the bound port number. A ``Shutdown`` on the server's ``control``
    stops listening, closes every connection and finishes the server. A connection gets
    ``closeTimeout`` seconds (default :data:`CLOSE_TIMEOUT`, 10) to write out what it holds;
    one whose peer reads nothing is then closed at once (with one log line), so the server
    still finishes.
    """

    Inboxes = {"inbox": "unused", "control": "a Shutdown stops the server"}
    Outboxes = {"outbox": "unused", "signal": "the shutdown message, passed on"}

    protocol: Any = None
    port: int = 0
    closeTimeout: float = CLOSE_TIMEOUT

    def __init__(
        self,
        protocol: Any = None,
        port: int | None = None,
        *,
        endpoint: str | None = None,
        socketOptions: Any = None,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self.socketOptions = socketOptions
        self._options = _checkSocketOptions(socketOptions)
        if protocol is None:
            protocol = type(self).protocol
        if protocol is None or not callable(protocol):
            raise TypeError(f"{type(self).__name__} needs a protocol factory, not {protocol!r}")
        if port is None:
            port = type(self).port
        self.protocol = protocol
        self.port = port
        self.endpoint = endpoint if endpoint is not None else f"tcp:{port}:interface=127.0.0.1"
        self.listening: Deferred[int] = Deferred()
        self.listeningPort: Any = None
        self.connections: set[_ConnectionHandler] = set()

    def mkProtocolHandler(self, **sockInfo: Any) -> Any:
        """The component for a new connection: ``protocol(**sockInfo)`` (Kamaelia's hook)."""
        return self.protocol(**sockInfo)

    def _setOptions(self) -> None:
        if not self._options:
            return
        sock = getattr(self.listeningPort, "socket", None)
        if sock is None:
            raise TypeError(f"socketOptions: {self.endpoint!r} is not listening on a socket")
        for option in self._options:
            try:
                sock.setsockopt(*option)
            except OSError as e:
                raise OSError(e.errno, f"socketOptions {option!r} refused: {e.strerror}") from None

    async def main(self) -> None:
        try:
            ep = serverEndpoint(self.endpoint)
            self.listeningPort = await ep.listen(_ServerFactory(self))
            try:
                self._setOptions()
            except Exception:
                await self.listeningPort.stopListening()
                raise
        except Exception:
            self.listening.errback(currentFailure())
            raise
        self.listening.callback(self.listeningPort.getHost().port)
        async for _ in self.messages("inbox"):
            pass  # nothing to do with data; we wait for a shutdown on control
        await self.listeningPort.stopListening()
        handlers = list(self.connections)
        for h in handlers:
            transport: Any = h.transport
            if transport is not None:
                transport.loseConnection()
        timer = getReactor().callLater(self.closeTimeout, self._abortStalled, handlers)
        try:
            await DeferredList([h.lost for h in handlers])
        finally:
            if timer.active():
                timer.cancel()

    def _abortStalled(self, handlers: list[Any]) -> None:
        stalled = [h for h in handlers if not h.lost.called and h.transport is not None]
        if stalled:
            _log.warn(
                "{server}: {count} connection(s) did not take what was left to send within "
                "{timeout:g} s of the shutdown: closed at once",
                server=self,
                count=len(stalled),
                timeout=self.closeTimeout,
            )
        for h in stalled:
            h.transport.abortConnection()


class SimpleServer(ServerCore):
    """
    A :class:`ServerCore` whose ``protocol`` takes no arguments (Kamaelia's SimpleServer,
    also a ServerCore subclass): ``SimpleServer(protocol, port=0, *, endpoint=None)``, the
    same boxes, messages and ``listening`` Deferred. A component class will do as
    ``protocol``::

        SimpleServer(Echo, port=1601).run()
    """

    def mkProtocolHandler(self, **sockInfo: Any) -> Any:
        """The component for a new connection: ``protocol()``."""
        return self.protocol()
