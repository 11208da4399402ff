"""TCPClient, ThreadedTCPClient and SimpleServer against real sockets on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pcpkit import (
    Component,
    ErrorInformation,
    ProducerFinished,
    ShutdownMicroprocess,
    SocketShutdown,
    producerFinished,
    shutdownMicroprocess,
)
from pcpkit.internet.tcp import ServerCore, SimpleServer, TCPClient
from pcpkit.internet.threadedtcp import ThreadedTCPClient
from tests.tcputil import EchoServerProtocol, ResetAfter, Streamer, freePort, server
from tests.waitutil import waitUntil

CHUNK = bytes(range(256)) * 256  # 64 KiB


class ByteSink(Component):
    """Counts and hashes bytes; records every signal; ends on SocketShutdown."""

    def __init__(self, expect: int | None = None, delay: float = 0.0, **argd: Any) -> None:
        super().__init__(**argd)
        self.count = 0
        self.sha = hashlib.sha256()
        self.signals: list[Any] = []
        self.expect = expect
        self.reached: Deferred[None] = Deferred()
        self.delay = delay
        self.maxQueued = 0

    def main(self) -> Generator[int, None, None]:
        nextAt = 0.0
        while True:
            self.maxQueued = max(self.maxQueued, self.dataReady("inbox"))
            if self.delay and reactor.seconds() < nextAt:
                self.pause()
                yield 1
                continue
            n = 0
            while self.dataReady("inbox") and (not self.delay or n < 2):
                data = self.recv("inbox")
                self.count += len(data)
                self.sha.update(data)
                n += 1
            if self.expect is not None and self.count >= self.expect and not self.reached.called:
                self.reached.callback(None)
            while self.dataReady("control"):
                msg = self.recv("control")
                self.signals.append(msg)
                if isinstance(msg, SocketShutdown):
                    # drain anything that raced in
                    while self.dataReady("inbox"):
                        data = self.recv("inbox")
                        self.count += len(data)
                        self.sha.update(data)
                    return
            if self.delay:
                nextAt = reactor.seconds() + self.delay
                reactor.callLater(self.delay, self.unpause)
            self.pause()
            yield 1


class Feeder(Component):
    """Puts ``count`` chunks into its outbox, waiting while the destination is full."""

    def __init__(self, count: int, chunk: bytes = CHUNK, **argd: Any) -> None:
        super().__init__(**argd)
        self.count = count
        self.chunk = chunk

    async def main(self) -> None:
        for _ in range(self.count):
            await self.put(self.chunk, "outbox")


def wire(client: Component, sink: ByteSink, feeder: Component | None = None) -> None:
    client.link((client, "outbox"), (sink, "inbox"))
    client.link((client, "signal"), (sink, "control"))
    if feeder is not None:
        feeder.link((feeder, "outbox"), (client, "inbox"))


def kinds(signals: list[Any]) -> list[str]:
    return [type(s).__name__ for s in signals]


CLIENTS = [
    pytest.param(lambda port: TCPClient("127.0.0.1", port), id="TCPClient"),
    pytest.param(lambda port: ThreadedTCPClient("127.0.0.1", port), id="ThreadedTCPClient"),
]


@pytest.mark.parametrize("makeClient", CLIENTS)
@pytest_twisted.ensureDeferred
async def test_echo_round_trip_32MiB_in_order(makeClient: Any) -> None:
    total = 32 * 1024 * 1024
    async with server(EchoServerProtocol) as (port, _):
        client = makeClient(port)
        sink = ByteSink(expect=total)
        feeder = Feeder(total // len(CHUNK))
        wire(client, sink, feeder)
        for c in (sink, client, feeder):
            c.activate()
        await sink.reached.addTimeout(120, reactor)
        client.inboxes["control"].deliver(producerFinished())
        await sink.finished.addTimeout(30, reactor)
        await client.finished.addTimeout(30, reactor)
    assert sink.count == total
    assert sink.sha.digest() == hashlib.sha256(CHUNK * (total // len(CHUNK))).digest()
    assert kinds(sink.signals) == ["SocketShutdown"]
    assert client.bytesSent == total


@pytest.mark.parametrize("makeClient", CLIENTS)
@pytest_twisted.ensureDeferred
async def test_refused_connection_signals_error_then_shutdown(makeClient: Any) -> None:
    client = makeClient(freePort())
    sink = ByteSink()
    wire(client, sink)
    sink.activate()
    client.activate()
    await sink.finished.addTimeout(30, reactor)
    await client.finished.addTimeout(30, reactor)
    # the sink ends on the first SocketShutdown; the error must come before it
    assert isinstance(sink.signals[0], ErrorInformation)
    assert "refused" in str(sink.signals[0]).lower()
    assert "cannot connect to 127.0.0.1" in str(sink.signals[0])
    rest = [sink.recv("control") for _ in range(sink.dataReady("control"))]
    assert kinds(sink.signals[1:] + rest) == ["SocketShutdown"]


@pytest.mark.parametrize("makeClient", CLIENTS)
@pytest_twisted.ensureDeferred
async def test_reset_mid_transfer_signals_error_then_shutdown(makeClient: Any) -> None:
    async with server(ResetAfter) as (port, _):
        client = makeClient(port)
        sink = ByteSink()
        feeder = Feeder(1000)  # 64 MiB: far more than the server reads before resetting
        wire(client, sink, feeder)
        for c in (sink, client, feeder):
            c.activate()
        await sink.finished.addTimeout(60, reactor)
        await client.finished.addTimeout(60, reactor)
        feeder.inboxes["control"].deliver(ShutdownMicroprocess())
    allSignals = sink.signals + [sink.recv("control") for _ in range(sink.dataReady("control"))]
    names = kinds(allSignals)
    assert names[-1] == "SocketShutdown" and names.count("SocketShutdown") == 1
    assert "ErrorInformation" in names
    assert any(
        "reset" in str(s).lower() or "lost" in str(s).lower() or "unsent" in str(s).lower()
        for s in allSignals
        if isinstance(s, ErrorInformation)
    )


@pytest.mark.parametrize("makeClient", CLIENTS)
@pytest_twisted.ensureDeferred
async def test_shutdownMicroprocess_closes_at_once(makeClient: Any) -> None:
    async with server(EchoServerProtocol) as (port, _):
        client = makeClient(port)
        sink = ByteSink(expect=5)
        wire(client, sink)
        sink.activate()
        client.activate()
        client.inboxes["inbox"].deliver(b"hello")
        await sink.reached.addTimeout(30, reactor)  # the echo came back
        client.inboxes["control"].deliver(ShutdownMicroprocess())
        await sink.finished.addTimeout(30, reactor)
        await client.finished.addTimeout(30, reactor)
    assert sink.count == 5
    assert kinds(sink.signals) == ["SocketShutdown"]


@pytest.mark.parametrize("makeClient", CLIENTS)
@pytest_twisted.ensureDeferred
async def test_str_in_inbox_is_refused_with_a_clear_error(makeClient: Any) -> None:
    async with server(EchoServerProtocol) as (port, _):
        client = makeClient(port)
        sink = ByteSink(expect=2)
        wire(client, sink)
        sink.activate()
        client.activate()
        client.inboxes["inbox"].deliver("text")
        client.inboxes["inbox"].deliver(b"ok")
        await sink.reached.addTimeout(30, reactor)
        client.inboxes["control"].deliver(producerFinished())
        await sink.finished.addTimeout(30, reactor)
        await client.finished.addTimeout(30, reactor)
    assert sink.count == 2
    errors = [s for s in sink.signals if isinstance(s, ErrorInformation)]
    assert len(errors) == 1 and "not str" in str(errors[0])


@pytest_twisted.ensureDeferred
async def test_initialsendmessage_and_endpoint_string() -> None:
    async with server(EchoServerProtocol) as (port, _):
        client = TCPClient(initialsendmessage=b"hi there", endpoint=f"tcp:127.0.0.1:{port}")
        sink = ByteSink(expect=8)
        wire(client, sink)
        sink.activate()
        client.activate()
        await sink.reached.addTimeout(30, reactor)
        client.inboxes["control"].deliver(producerFinished())
        await client.finished.addTimeout(30, reactor)
        await sink.finished.addTimeout(30, reactor)
    assert sink.sha.digest() == hashlib.sha256(b"hi there").digest()


@pytest_twisted.ensureDeferred
async def test_tcpclient_reading_256MiB_into_a_slow_sink_stays_bounded() -> None:
    total = 256 * 1024 * 1024
    async with server(Streamer, total=total) as (port, _):
        client = TCPClient("127.0.0.1", port)
        sink = ByteSink(delay=0.001)  # two messages a millisecond at most
        sink.setInboxSize("inbox", 16)
        wire(client, sink)
        sink.activate()
        client.activate()
        await sink.finished.addTimeout(240, reactor)
        await client.finished.addTimeout(30, reactor)
    assert sink.count == total
    pattern = hashlib.sha256(Streamer.chunk * (total // len(Streamer.chunk))).digest()
    assert sink.sha.digest() == pattern
    # one transport read (<= 64 KiB) may land after the pause: 17 messages at most
    assert sink.maxQueued <= 16 + 1
    assert client.readPauses > 0


@pytest_twisted.ensureDeferred
async def test_tcpclient_slow_sink_at_first() -> None:
    total = 16 * 1024 * 1024
    async with server(Streamer, total=total) as (port, _):
        client = TCPClient("127.0.0.1", port)
        sink = ByteSink(delay=0.002)
        sink.setInboxSize("inbox", 8)
        wire(client, sink)
        sink.activate()
        client.activate()

        def speedUp() -> None:
            sink.delay = 0.0
            sink.unpause()

        reactor.callLater(0.5, speedUp)
        await sink.finished.addTimeout(120, reactor)
        await client.finished.addTimeout(30, reactor)
    assert sink.count == total
    assert sink.maxQueued <= 8 + 1
    assert client.readPauses > 0


# -- SimpleServer --------------------------------------------------------------------------


class EchoComponent(Component):
    """Echoes its inbox to its outbox; ends when the peer goes (SocketShutdown)."""

    async def main(self) -> None:
        async for data in self.messages("inbox"):
            await self.put(data, "outbox")


def _blockingEchoClient(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            got.append(data)
    return b"".join(got)


@pytest_twisted.ensureDeferred
async def test_simpleserver_echo_100_concurrent_clients() -> None:
    srv = SimpleServer(protocol=EchoComponent)
    srv.activate()
    port = await srv.listening.addTimeout(10, reactor)
    assert port > 0
    clients = []
    for i in range(100):
        client = TCPClient("127.0.0.1", port)
        sink = ByteSink(expect=20_000)
        wire(client, sink)
        sink.activate()
        client.activate()
        payload = bytes([i % 256]) * 20_000
        client.inboxes["inbox"].deliver(payload)
        clients.append((client, sink, payload))
    await DeferredList([s.reached for _, s, _ in clients]).addTimeout(60, reactor)
    handlers = list(srv.connections)
    assert len(handlers) == 100
    for client, _, _ in clients:
        client.inboxes["control"].deliver(producerFinished())
    await DeferredList([s.finished for _, s, _ in clients]).addTimeout(60, reactor)
    for _, sink, payload in clients:
        assert sink.sha.digest() == hashlib.sha256(payload).digest()
    # every per-connection component ended when its peer went
    await DeferredList([h.lost for h in handlers]).addTimeout(30, reactor)
    await DeferredList([h.component.finished for h in handlers]).addTimeout(30, reactor)
    assert not srv.connections
    srv.inboxes["control"].deliver(producerFinished())
    await srv.finished.addTimeout(10, reactor)


@pytest_twisted.ensureDeferred
async def test_simpleserver_component_closing_with_producerFinished() -> None:
    class Greeter(Component):
        def main(self) -> Generator[int, None, None]:
            self.send(b"hello and goodbye\n", "outbox")
            self.send(ProducerFinished(self), "signal")
            yield 1

    srv = SimpleServer(Greeter)
    srv.activate()
    port = await srv.listening
    from twisted.internet.threads import deferToThread

    got = await deferToThread(_blockingEchoClient, port, b"")
    assert got == b"hello and goodbye\n"
    srv.inboxes["control"].deliver(producerFinished())
    await srv.finished.addTimeout(10, reactor)


@pytest_twisted.ensureDeferred
async def test_simpleserver_answers_a_client_that_half_closed() -> None:
    """
    A client that sends and then shuts its sending side (``nc -N``, ``shutdown(SHUT_WR)``)
    gets every byte of the answer: the end of its input reaches the component as a
    ``SocketShutdown``, and the connection closes once the component has ended and what it
    sent has been written, not at the peer's end of input.
    """
    srv = SimpleServer(EchoComponent)
    srv.activate()
    port = await srv.listening
    from twisted.internet.threads import deferToThread

    payload = os.urandom(4 << 20)
    got = await deferToThread(_blockingEchoClient, port, payload)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert len(got) == len(payload)
    srv.inboxes["control"].deliver(producerFinished())
    await srv.finished.addTimeout(10, reactor)


@pytest_twisted.ensureDeferred
async def test_simpleserver_stop_closes_open_connections() -> None:
    srv = SimpleServer(EchoComponent)
    srv.activate()
    port = await srv.listening
    client = TCPClient("127.0.0.1", port)
    sink = ByteSink(expect=3)
    wire(client, sink)
    sink.activate()
    client.activate()
    client.inboxes["inbox"].deliver(b"abc")
    await sink.reached.addTimeout(10, reactor)
    srv.inboxes["control"].deliver(producerFinished())
    await srv.finished.addTimeout(10, reactor)
    await sink.finished.addTimeout(10, reactor)
    assert kinds(sink.signals) == ["SocketShutdown"]


class Flood(Component):
    """Sends 20 MB, as fast as the socket takes it."""

    async def main(self) -> None:
        for _ in range(200):
            await self.put(b"x" * 100_000, "outbox")


@pytest_twisted.ensureDeferred
async def test_simpleserver_stop_does_not_wait_for_good_on_a_peer_that_reads_nothing() -> None:
    srv = SimpleServer(Flood, closeTimeout=0.5)
    srv.activate()
    port = await srv.listening
    peer = socket.create_connection(("127.0.0.1", port))  # connects, never reads
    try:
        await waitUntil(lambda: len(srv.connections) == 1, 10, "the connection")
        conn = next(iter(srv.connections))
        # what the component sent fills the socket: the connection holds bytes it cannot write
        await waitUntil(lambda: conn.transport.dataBuffer or conn.transport._tempDataLen, 10)
        srv.inboxes["control"].deliver(ShutdownMicroprocess())
        # loseConnection alone waits for the peer to read; after closeTimeout it is aborted
        await srv.finished.addTimeout(20, reactor)
        assert not srv.connections
        peer.settimeout(10)
        with pytest.raises(ConnectionResetError):
            while peer.recv(1 << 20):  # what was written, then the reset: not a clean end
                pass
    finally:
        peer.close()


def test_simpleserver_needs_a_protocol() -> None:
    with pytest.raises(TypeError, match="protocol factory"):
        SimpleServer()


# -- Kamaelia's signature: TCPClient(host, port, delay, connect_timeout, wait_for_serverclose)


def test_tcpclient_takes_kamaelias_arguments_positionally() -> None:
    client = TCPClient("127.0.0.1", 80, 1.5, 7, True)
    assert (client.delay, client.connect_timeout, client.wait_for_serverclose) == (1.5, 7, True)
    assert client.initialsendmessage is None
    defaults = TCPClient("127.0.0.1", 80)
    assert (defaults.delay, defaults.connect_timeout, defaults.wait_for_serverclose) == (
        0,
        60,
        False,
    )


def test_tcpclient_refuses_an_initial_message_in_delays_place() -> None:
    with pytest.raises(TypeError, match="delay must be a number of seconds.*keyword-only"):
        TCPClient("127.0.0.1", 80, b"hello")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delay must be >= 0"):
        TCPClient("127.0.0.1", 80, -1)
    with pytest.raises(ValueError, match="connect_timeout must be > 0"):
        TCPClient("127.0.0.1", 80, 0, 0)


class StampConnection(Protocol):
    """Records when each connection is made, then closes it."""

    def connectionMade(self) -> None:
        self.factory.connected.append(reactor.seconds())  # type: ignore[attr-defined]
        self.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_tcpclient_delay_waits_before_connecting() -> None:
    async with server(StampConnection) as (port, factory):
        client = TCPClient("127.0.0.1", port, 0.3)
        sink = ByteSink()
        wire(client, sink)
        sink.activate()
        started = reactor.seconds()
        client.activate()
        await client.finished.addTimeout(30, reactor)
    assert len(factory.connected) == 1
    assert factory.connected[0] - started >= 0.3
    assert kinds(sink.signals) == ["SocketShutdown"]


@pytest_twisted.ensureDeferred
async def test_tcpclient_shutdownmicroprocess_during_delay_never_connects() -> None:
    async with server(StampConnection) as (port, factory):
        client = TCPClient("127.0.0.1", port, 30)
        sink = ByteSink()
        wire(client, sink)
        sink.activate()
        client.activate()
        client.inboxes["control"].deliver(ShutdownMicroprocess())
        await client.finished.addTimeout(5, reactor)
        await sink.finished.addTimeout(5, reactor)
    assert client.transport is None and factory.connected == []
    assert kinds(sink.signals) == ["SocketShutdown"]


@contextmanager
def nonAnsweringListener() -> Iterator[int]:
    """
    A port on 127.0.0.1 whose listener never accepts and whose backlog is full: a new
    connection attempt gets no answer (its SYNs are dropped) until it gives up.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(2):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


@pytest_twisted.ensureDeferred
async def test_tcpclient_connect_timeout_gives_up() -> None:
    with nonAnsweringListener() as port:
        client = TCPClient("127.0.0.1", port, 0, 0.5)
        sink = ByteSink()
        wire(client, sink)
        sink.activate()
        started = reactor.seconds()
        client.activate()
        await client.finished.addTimeout(30, reactor)
        await sink.finished.addTimeout(5, reactor)
    assert reactor.seconds() - started >= 0.5
    assert kinds(sink.signals) == ["ErrorInformation", "SocketShutdown"]
    assert "no connection within 0.5 s" in str(sink.signals[0])


@implementer(IStreamClientEndpoint)
class NoticedEndpoint:
    """A real TCP client endpoint whose ``attempted`` fires once a connection attempt began."""

    def __init__(self, port: int) -> None:
        self.inner = HostnameEndpoint(reactor, "127.0.0.1", port)
        self.attempted: Deferred[None] = Deferred()

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = self.inner.connect(factory)
        self.attempted.callback(None)
        return d


@pytest_twisted.ensureDeferred
async def test_tcpclient_shutdownmicroprocess_while_connecting_gives_up_at_once() -> None:
    with nonAnsweringListener() as port:
        endpoint = NoticedEndpoint(port)
        verifyObject(IStreamClientEndpoint, endpoint)
        client = TCPClient(endpoint=endpoint, connect_timeout=60)
        sink = ByteSink()
        wire(client, sink)
        sink.activate()
        client.activate()
        # the attempt is under way, and only its 60 s timeout could end it (no SYN is answered)
        await endpoint.attempted.addTimeout(5, reactor)
        client.inboxes["control"].deliver(ShutdownMicroprocess())
        await client.finished.addTimeout(5, reactor)
        await sink.finished.addTimeout(5, reactor)
    assert kinds(sink.signals) == ["SocketShutdown"]


class AnswerOnCue(Protocol):
    """
    Keeps what it receives and fires ``factory.heard`` with itself once ``factory.expect``
    bytes came; writes only when told (``answer``); fires ``factory.done`` with (what it
    received, whether it closed the connection itself) when the connection ends.
    """

    def connectionMade(self) -> None:
        self.chunks: list[bytes] = []
        self.closedHere = False
        self.factory.connected.append(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        heard = self.factory.heard  # type: ignore[attr-defined]
        if len(b"".join(self.chunks)) >= len(self.factory.expect) and not heard.called:  # type: ignore[attr-defined]
            heard.callback(self)

    def answer(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        self.closedHere = True
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        self.factory.done.callback((b"".join(self.chunks), self.closedHere))  # type: ignore[attr-defined]


def actedOn(client: Component, message: object) -> Deferred[None]:
    """
    Deliver ``message`` to ``client``'s control inbox; the Deferred fires on the reactor turn
    after the client took it. TCPClient acts on a control message in the step that takes it
    (it closes, or starts waiting for the server, with no wait in between), so by then it has.
    """
    taken: Deferred[None] = Deferred()
    control = client.inboxes["control"]
    control.deliver(message)
    control.addWaiter(lambda: reactor.callLater(0, taken.callback, None))
    return taken


@pytest.mark.parametrize("wait", [True, False])
@pytest_twisted.ensureDeferred
async def test_tcpclient_wait_for_serverclose(wait: bool) -> None:
    async with server(AnswerOnCue, heard=Deferred(), expect=b"request") as (port, factory):
        client = TCPClient("127.0.0.1", port, wait_for_serverclose=wait)
        sink = ByteSink(expect=len(b"reply"))
        wire(client, sink)
        sink.activate()
        client.activate()
        client.inboxes["inbox"].deliver(b"request")
        taken = actedOn(client, producerFinished())
        peer = await factory.heard.addTimeout(30, reactor)
        await taken.addTimeout(30, reactor)
        if wait:
            # after the ProducerFinished, the client still reads: the answer gets through
            peer.answer(b"reply")
            await sink.reached.addTimeout(30, reactor)
            assert not client.finished.called
            peer.close()
        received, serverClosed = await factory.done.addTimeout(30, reactor)
        await client.finished.addTimeout(30, reactor)
        await sink.finished.addTimeout(5, reactor)
    assert received == b"request"
    assert kinds(sink.signals) == ["SocketShutdown"]
    if wait:
        # the connection stayed open until the server closed it
        assert serverClosed and sink.count == len(b"reply")
    else:
        # closed after sending, as before, without being told by the server
        assert not serverClosed and sink.count == 0


@pytest_twisted.ensureDeferred
async def test_tcpclient_waiting_for_serverclose_still_aborts_on_shutdownmicroprocess() -> None:
    async with server(AnswerOnCue, heard=Deferred(), expect=b"all of it") as (port, factory):
        client = TCPClient("127.0.0.1", port, 0, 60, True)
        sink = ByteSink(expect=len(b"ping"))
        wire(client, sink)
        sink.activate()
        client.activate()
        client.inboxes["inbox"].deliver(b"all of it")
        taken = actedOn(client, producerFinished())
        peer = await factory.heard.addTimeout(30, reactor)
        await taken.addTimeout(30, reactor)
        # waiting for a server that never closes: still connected and reading ...
        peer.answer(b"ping")
        await sink.reached.addTimeout(30, reactor)
        # ... until told to stop
        client.inboxes["control"].deliver(ShutdownMicroprocess())
        await client.finished.addTimeout(5, reactor)
        received, serverClosed = await factory.done.addTimeout(5, reactor)
        await sink.finished.addTimeout(5, reactor)
    assert received == b"all of it" and not serverClosed
    assert sink.count == len(b"ping")
    assert kinds(sink.signals) == ["SocketShutdown"]


# -- Kamaelia's socketOptions -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_socket_options_are_set_on_the_listening_socket() -> None:
    plain = SimpleServer(EchoComponent)
    plain.activate()
    await plain.listening
    assert plain.listeningPort.socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    one = SimpleServer(EchoComponent, socketOptions=(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    several = ServerCore(
        lambda **info: EchoComponent(),
        socketOptions=[
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        ],
    )
    for srv in (one, several):
        srv.activate()
        port = await srv.listening
        sock = srv.listeningPort.socket
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        # and the server still serves
        from twisted.internet.threads import deferToThread

        assert await deferToThread(_blockingEchoClient, port, b"ping") == b"ping"
    assert several.listeningPort.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    for srv in (plain, one, several):
        srv.inboxes["control"].deliver(producerFinished())
        await srv.finished.addTimeout(10, reactor)


def test_socket_options_of_the_wrong_shape_are_refused() -> None:
    for bad in [(socket.SOL_SOCKET, socket.SO_KEEPALIVE), "SO_KEEPALIVE", [(1, 2, 3.5)]]:
        with pytest.raises(TypeError, match=r"socketOptions must be a \(level, option, value\)"):
            SimpleServer(EchoComponent, socketOptions=bad)


@pytest_twisted.ensureDeferred
async def test_a_socket_option_the_kernel_refuses_fails_the_server() -> None:
    srv = SimpleServer(EchoComponent, socketOptions=(socket.SOL_SOCKET, 0x7FFF, 1))
    srv.activate()
    with pytest.raises(OSError, match=r"socketOptions \(1, 32767, 1\) refused"):
        await srv.listening
    with pytest.raises(OSError):
        await srv.finished
    assert not srv.listeningPort.connected  # it stopped listening before it failed


# -- Kamaelia's serversignal ----------------------------------------------------------------


class QuitOnCommand(Component):
    """Echoes; ``quit`` sends Kamaelia's server shutdown on ``serversignal``."""

    Outboxes = {"outbox": "echo", "signal": "shutdowns", "serversignal": "stops the server"}

    async def main(self) -> None:
        async for data in self.messages("inbox"):
            if data.strip() == b"quit":
                self.send(shutdownMicroprocess(), "serversignal")
            else:
                await self.put(data, "outbox")


@pytest_twisted.ensureDeferred
async def test_a_connection_can_stop_the_server_through_serversignal() -> None:
    srv = SimpleServer(QuitOnCommand)
    srv.activate()
    port = await srv.listening
    from twisted.internet.threads import deferToThread

    # connections that end normally leave nothing linked to the server's control
    for _ in range(20):
        assert await deferToThread(_blockingEchoClient, port, b"hello") == b"hello"
    await waitUntil(lambda: not srv.connections, 10)
    assert srv.inboxes["control"].sources == []
    assert not srv.finished.called
    await deferToThread(_blockingEchoClient, port, b"quit\n")
    await srv.finished.addTimeout(10, reactor)
    assert not srv.listeningPort.connected
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
