"""
pcpkit.internet.relay.Relay on real sockets (127.0.0.1), both paths.

Every test is bounded in time and waits for every connection it made to close, so the
reactor is clean afterwards (see conftest.py).
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit.internet import _splice
from pcpkit.internet import relay as relaymod
from pcpkit.internet.relay import Relay
from tests.waitutil import waitUntil

R: Any = reactor
HOST = "127.0.0.1"
HAVE_SPLICE = _splice.spliceAvailable()


class Path:
    """
    A way through the relay, as the tests' ``splice`` parameter (its truth: whether it
    splices): ``portable`` copies through Python on raw sockets, ``splice`` splices, and
    ``transports`` is the portable path of any other endpoint (a wrapped one here): each
    Twisted transport the streaming producer of the other.
    """

    def __init__(self, splice: bool, transports: bool = False) -> None:
        self.splice = splice
        self.transports = transports

    def __bool__(self) -> bool:
        return self.splice


@implementer(IStreamClientEndpoint)
class Wrapped:
    """A client endpoint the relay cannot see through: it must use Twisted transports."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def connect(self, factory: Factory) -> Deferred[Any]:
        return self.inner.connect(factory)  # type: ignore[no-any-return]


PATHS = [
    pytest.param(Path(False), id="portable"),
    pytest.param(
        Path(True),
        id="splice",
        marks=pytest.mark.skipif(not HAVE_SPLICE, reason="no os.splice on this platform"),
    ),
    pytest.param(Path(False, transports=True), id="transports"),
]
GiB = 1 << 30
MiB = 1 << 20

# A deterministic stream: a random block of a length that is no power of two, repeated.
# Any reordering or loss of a read-sized piece changes the bytes at that position.
_PERIOD = MiB + 7
_PATTERN = random.Random(20261121).randbytes(_PERIOD)
_PATTERN2 = _PATTERN + _PATTERN


def pattern(offset: int, n: int) -> bytes:
    """``n`` (<= 1 MiB) bytes of the stream from ``offset``."""
    start = offset % _PERIOD
    return _PATTERN2[start : start + n]


@functools.cache
def patternDigest(offset: int, size: int) -> str:
    h = hashlib.sha256()
    sent = 0
    while sent < size:
        n = min(MiB, size - sent)
        h.update(pattern(offset + sent, n))
        sent += n
    return h.hexdigest()


async def within(d: Deferred[Any], seconds: float) -> Any:
    """Wait for ``d`` at most ``seconds`` (then fail the test)."""
    return await d.addTimeout(seconds, R)


async def sleep(seconds: float) -> None:
    await deferLater(R, seconds, lambda: None)


def fdCount() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- peers -------------------------------------------------------------------------------


@implementer(IHalfCloseableProtocol)
class Peer(Protocol):
    """
    A half-closeable test peer: sends ``factory.send`` bytes of the pattern (from
    ``factory.offset``), then shuts its write side (``factory.halfClose``) or not; hashes
    what it receives; can read slowly; can reply only after the other side's end of stream
    (``factory.replyAfterEOF`` bytes); closes when both directions are done.
    """

    factory: PeerFactory

    def connectionMade(self) -> None:
        f = self.factory
        self.t: Any = self.transport
        self.received = 0
        self.hash = hashlib.sha256()
        self.sent = 0
        self.toSend = f.send
        self.sendOffset = f.offset
        self.paused = False
        self.eof = False
        self.writeClosed = False
        self.closed: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.resumeCall: Any = None
        f.peers.append(self)
        f.made.append(self)
        if self.toSend:
            self.t.registerProducer(self, True)
            self.resumeProducing()
        elif f.halfClose and not f.replyAfterEOF:
            self.closeWrite()

    # producer side
    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.sent < self.toSend:
            n = min(256 * 1024, self.toSend - self.sent)
            self.t.write(pattern(self.sendOffset + self.sent, n))
            self.sent += n
            if self.factory.abortAfterSending and self.sent >= self.factory.abortAfterSending:
                self.t.abortConnection()
                return
        if self.sent >= self.toSend and not self.writeClosed:
            self.t.unregisterProducer()
            if self.factory.halfClose:
                self.closeWrite()
            else:
                self.writeClosed = True

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True

    def closeWrite(self) -> None:
        self.writeClosed = True
        self.t.loseWriteConnection()

    # consumer side
    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.hash.update(data)
        f = self.factory
        if f.abortAfterReceiving and self.received >= f.abortAfterReceiving:
            self.t.abortConnection()
            return
        if f.readRate:
            # Read at most readRate bytes/s: stop reading for as long as this took.
            self.t.pauseProducing()
            self.resumeCall = R.callLater(len(data) / f.readRate, self._resumeReading)

    def _resumeReading(self) -> None:
        self.resumeCall = None
        self.t.resumeProducing()

    def readConnectionLost(self) -> None:
        self.eof = True
        f = self.factory
        if f.replyAfterEOF:
            self.toSend = f.replyAfterEOF
            self.t.registerProducer(self, True)
            self.resumeProducing()
        elif self.writeClosed:
            self.t.loseConnection()

    def writeConnectionLost(self) -> None:
        if self.eof:
            self.t.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.resumeCall is not None and self.resumeCall.active():
            self.resumeCall.cancel()
        self.reason = reason
        self.factory.peers.remove(self)
        self.closed.callback(None)

    @property
    def digest(self) -> str:
        return self.hash.hexdigest()


class PeerFactory(Factory):
    protocol = Peer

    def __init__(
        self,
        send: int = 0,
        offset: int = 0,
        halfClose: bool = True,
        replyAfterEOF: int = 0,
        readRate: float = 0.0,
        abortAfterSending: int = 0,
        abortAfterReceiving: int = 0,
    ) -> None:
        self.send = send
        self.offset = offset
        self.halfClose = halfClose
        self.replyAfterEOF = replyAfterEOF
        self.readRate = readRate
        self.abortAfterSending = abortAfterSending
        self.abortAfterReceiving = abortAfterReceiving
        self.peers: list[Peer] = []  # open now
        self.made: list[Peer] = []  # every one


class Echo(Protocol):
    factory: EchoFactory

    def connectionMade(self) -> None:
        self.factory.open += 1

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.open -= 1


class EchoFactory(Factory):
    protocol = Echo
    open = 0


class Client(Protocol):
    """Collects what it receives; ``closed`` fires with the reason."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.waiting: tuple[int, Deferred[bytes]] | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.waiting is not None and len(self.data) >= self.waiting[0]:
            n, d = self.waiting
            self.waiting = None
            d.callback(bytes(self.data[:n]))
            del self.data[:n]

    def roundTrip(self, message: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.waiting = (len(message), d)
        self.transport.write(message)  # type: ignore[union-attr]
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.closed.callback(None)


class Servers:
    """Listening ports opened by a test, closed by :meth:`close`."""

    def __init__(self) -> None:
        self.ports: list[Any] = []
        self.relays: list[Relay] = []

    async def listen(self, factory: Factory, rcvbuf: int = 0) -> int:
        # A listen queue that holds a burst: the relay may dial many connections at once.
        port: Any = await TCP4ServerEndpoint(R, 0, backlog=4096, interface=HOST).listen(factory)
        if rcvbuf:
            # Accepted sockets inherit it: a small window makes a slow reader felt sooner.
            port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.ports.append(port)
        return int(port.getHost().port)

    async def relay(self, target: int, **kw: Any) -> tuple[Relay, int]:
        connect: Any = f"tcp:{HOST}:{target}"
        path = kw.get("splice")
        if isinstance(path, Path):
            kw["splice"] = path.splice
            if path.transports:
                connect = Wrapped(TCP4ClientEndpoint(R, HOST, target))
        r = Relay(f"tcp:0:interface={HOST}", connect, **kw)
        port: Any = await r.start()
        self.relays.append(r)
        return r, int(port.getHost().port)

    async def close(self) -> None:
        await gatherResults([r.stop() for r in self.relays])
        await gatherResults([p.stopListening() for p in self.ports])


async def connect(port: int, factory: Factory) -> Any:
    return await within(TCP4ClientEndpoint(R, HOST, port).connect(factory), 10)


async def connectClient(port: int) -> Client:
    c: Client = await connect(port, Factory.forProtocol(Client))
    return c


# -- the tests ---------------------------------------------------------------------------


async def transfer(
    splice: bool, up: int, down: int, bufferSize: int = 262144, timeout: float = 120.0
) -> tuple[Relay, Peer, Peer]:
    """
    ``up`` bytes client -> server, then (after the client's end of stream) ``down`` bytes
    server -> client, through a relay; both peers close when done. Returns the relay (stopped)
    and both peers (closed).
    """
    s = Servers()
    try:
        serverF = PeerFactory(replyAfterEOF=down, offset=12345)
        target = await s.listen(serverF)
        relay, port = await s.relay(target, splice=splice, bufferSize=bufferSize)
        clientF = PeerFactory(send=up)
        client: Peer = await connect(port, clientF)
        await within(client.closed, timeout)
        await waitUntil(lambda: not serverF.peers, 10, "the server side to close")
        server = serverF.made[0]
        await waitUntil(lambda: relay.stats.active == 0, 10, "the relay to close the connection")
    finally:
        await s.close()
    return relay, client, server


def checkTransfer(relay: Relay, client: Peer, server: Peer, up: int, down: int) -> None:
    assert server.received == up
    assert server.digest == patternDigest(0, up)
    assert client.received == down
    assert client.digest == patternDigest(12345, down)
    assert client.reason is not None and client.reason.check(ConnectionDone)
    stats = relay.stats
    assert (stats.toTarget.bytes, stats.toClient.bytes) == (up, down)
    assert stats.total == 1 and stats.active == 0
    assert stats.toTarget.peakBuffered <= relay.bufferSize
    assert stats.toClient.peakBuffered <= relay.bufferSize


@pytest.mark.slow
@pytest.mark.parametrize("splice", PATHS)
@pytest_twisted.ensureDeferred
async def test_one_GiB_through_the_relay(splice: bool) -> None:
    t0 = time.monotonic()
    relay, client, server = await transfer(splice, up=GiB, down=MiB, timeout=300)
    elapsed = time.monotonic() - t0
    checkTransfer(relay, client, server, GiB, MiB)
    assert relay.stats.spliced == (1 if splice else 0)
    print(f"1 GiB through the {'splice' if splice else 'portable'} path: {elapsed:.1f} s")


@pytest.mark.skipif(not HAVE_SPLICE, reason="no os.splice on this platform")
@pytest_twisted.ensureDeferred
async def test_splice_and_portable_paths_give_identical_bytes() -> None:
    # Odd sizes both ways, so reads and pipe fills never line up with the pattern.
    up, down = 24 * MiB + 4099, 7 * MiB + 13
    digests = []
    for splice in (False, True):
        relay, client, server = await transfer(splice, up=up, down=down)
        checkTransfer(relay, client, server, up, down)
        assert relay.stats.spliced == (1 if splice else 0)
        digests.append((server.digest, client.digest))
    assert digests[0] == digests[1] == (patternDigest(0, up), patternDigest(12345, down))


@pytest.mark.parametrize("splice", PATHS)
@pytest.mark.parametrize("slowEnd", ["server", "client"])
@pytest_twisted.ensureDeferred
async def test_slow_reader_keeps_relay_buffer_bounded(splice: bool, slowEnd: str) -> None:
    bufferSize = 131072
    size = 12 * MiB
    rate = 8e6
    s = Servers()
    samples: list[int] = []
    try:
        if slowEnd == "server":
            serverF = PeerFactory(readRate=rate)
            clientF = PeerFactory(send=size)
        else:
            # The server sends as soon as the client has said it is done.
            serverF = PeerFactory(replyAfterEOF=size)
            clientF = PeerFactory(readRate=rate)
        target = await s.listen(serverF, rcvbuf=65536 if slowEnd == "server" else 0)
        relay, port = await s.relay(target, splice=splice, bufferSize=bufferSize)

        def sample() -> None:
            for conn in relay.connections:
                flow = conn.toTarget if slowEnd == "server" else conn.toClient
                samples.append(flow.buffered)

        sampler = LoopingCall(sample)
        sampler.start(0.005)
        try:
            client: Peer = await connect(port, clientF)
            if slowEnd == "client":
                # A small window at the slow end makes it felt sooner.
                client.t.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            await within(client.closed, 60)
            await waitUntil(lambda: relay.stats.active == 0 and not serverF.peers, 30)
        finally:
            sampler.stop()
        server = serverF.made[0]
    finally:
        await s.close()
    stats = relay.stats
    flow = stats.toTarget if slowEnd == "server" else stats.toClient
    received = server.received if slowEnd == "server" else client.received
    print(
        f"slow {slowEnd}: {len(samples)} samples, max {max(samples)}, "
        f"peak {flow.peakBuffered}, {flow.pauses} pauses"
    )
    assert received == size
    assert flow.bytes == size
    assert len(samples) > 50
    assert max(samples) <= bufferSize
    assert flow.peakBuffered <= bufferSize
    # The slow reader was really felt: the relay filled its buffer and paused the sender.
    assert flow.pauses > 0
    assert flow.peakBuffered >= bufferSize // 2


@pytest.mark.parametrize("splice", PATHS)
@pytest_twisted.ensureDeferred
async def test_half_close_client_still_gets_the_full_reply(splice: bool) -> None:
    # The server replies only after it has seen the client's end of stream.
    up, down = 3 * MiB + 1, 5 * MiB + 3
    relay, client, server = await transfer(splice, up=up, down=down)
    checkTransfer(relay, client, server, up, down)
    assert server.eof and client.eof


@pytest.mark.parametrize("splice", PATHS)
@pytest_twisted.ensureDeferred
async def test_connection_cap(splice: bool) -> None:
    s = Servers()
    echo = EchoFactory()
    clients: list[Client] = []
    try:
        relay, port = await s.relay(await s.listen(echo), splice=splice, maxConnections=2)
        for i in range(2):
            c = await connectClient(port)
            clients.append(c)
            assert await within(c.roundTrip(b"hello %d" % i), 5) == b"hello %d" % i
        third = await connectClient(port)
        await within(third.closed, 5)
        assert not third.data
        assert relay.stats.refused == 1 and relay.stats.active == 2
        for i, c in enumerate(clients):
            assert await within(c.roundTrip(b"still %d" % i), 5) == b"still %d" % i
        # Below the cap again: a new connection is relayed.
        clients[0].transport.loseConnection()  # type: ignore[union-attr]
        await within(clients.pop(0).closed, 5)
        await waitUntil(lambda: relay.stats.active == 1, 5)
        c = await connectClient(port)
        clients.append(c)
        assert await within(c.roundTrip(b"again"), 5) == b"again"
        assert relay.stats.total == 3 and relay.stats.refused == 1
    finally:
        for c in clients:
            c.transport.loseConnection()  # type: ignore[union-attr]
        await gatherResults([c.closed for c in clients])
        await waitUntil(lambda: echo.open == 0, 5)
        await s.close()


@pytest.mark.parametrize("splice", PATHS)
@pytest_twisted.ensureDeferred
async def test_2000_sequential_connections_leak_no_descriptors(splice: bool) -> None:
    s = Servers()
    echo = EchoFactory()
    try:
        relay, port = await s.relay(await s.listen(echo), splice=splice)
        # Warm up (the reactor and the logger open what they need once), then count.
        c = await connectClient(port)
        await within(c.roundTrip(b"warm"), 5)
        c.transport.loseConnection()  # type: ignore[union-attr]
        await within(c.closed, 5)
        await waitUntil(lambda: relay.stats.active == 0 and echo.open == 0, 5)
        before = fdCount()
        for i in range(2000):
            c = await connectClient(port)
            message = b"ping %d" % i
            assert await within(c.roundTrip(message), 5) == message
            c.transport.loseConnection()  # type: ignore[union-attr]
            await within(c.closed, 5)
        await waitUntil(lambda: relay.stats.active == 0 and echo.open == 0, 10)
        assert relay.stats.total == 2001
        assert relay.stats.spliced == (2001 if splice else 0)
        # Stopped, the relay has closed its listening socket and its idle pipes too.
        await relay.stop()
        after = fdCount()
        assert after < before, (before, after)
    finally:
        await s.close()


@pytest.mark.parametrize("splice", PATHS)
@pytest_twisted.ensureDeferred
async def test_server_speaks_first(splice: bool) -> None:
    # The target writes as soon as it is connected (a banner), before the client says a word.
    s = Servers()
    try:
        serverF = PeerFactory(send=MiB + 17)
        relay, port = await s.relay(await s.listen(serverF), splice=splice)
        client: Peer = await connect(port, PeerFactory())
        await within(client.closed, 30)
        await waitUntil(lambda: relay.stats.active == 0 and not serverF.peers, 10)
        assert client.received == MiB + 17
        assert client.digest == patternDigest(0, MiB + 17)
        assert client.reason is not None and client.reason.check(ConnectionDone)
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_stop_while_dialling_cancels_the_dial() -> None:
    cancelled: list[Deferred[Any]] = []

    @implementer(IStreamClientEndpoint)
    class BlackHole:
        """A target that never answers."""

        def connect(self, factory: Factory) -> Deferred[Any]:
            d: Deferred[Any] = Deferred(lambda d: cancelled.append(d))
            return d

    relay = Relay(f"tcp:0:interface={HOST}", BlackHole())
    port: Any = await relay.start()
    c = await connectClient(port.getHost().port)
    await waitUntil(lambda: relay.stats.active == 1, 5)
    assert [conn.state for conn in relay.connections] == ["dialling"]
    await within(relay.stop(), 5)
    assert len(cancelled) == 1
    await within(c.closed, 5)
    assert relay.stats.active == 0 and relay.stats.failedDials == 0


class Unanswered:
    """
    A listening socket that answers no more connects: its accept queue (backlog 0) is
    kept full, so the kernel drops the SYNs of any further one, which stays in progress.
    """

    def __init__(self) -> None:
        self.server = socket.create_server((HOST, 0), backlog=0)
        self.port = self.server.getsockname()[1]
        self.fillers: list[socket.socket] = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((HOST, self.port))
            self.fillers.append(s)

    def close(self) -> None:
        for s in [*self.fillers, self.server]:
            s.close()


@pytest.mark.parametrize("splice", [False, pytest.param(True, marks=PATHS[1].marks)])
@pytest_twisted.ensureDeferred
async def test_a_dial_that_times_out_closes_the_client(splice: bool) -> None:
    # The endpoint string's timeout holds for the relay's own dialling of a TCP target.
    target = Unanswered()
    relay = Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:{target.port}:timeout=1", splice=splice)
    try:
        port: Any = await relay.start()
        c = await connectClient(port.getHost().port)
        await waitUntil(lambda: relay.stats.active == 1, 5)
        assert [conn.state for conn in relay.connections] == ["dialling"]
        await within(c.closed, 10)
        assert not c.data
        await waitUntil(lambda: relay.stats.active == 0, 5)
        assert relay.stats.failedDials == 1
    finally:
        await relay.stop()
        target.close()


@pytest.mark.skipif(sys.platform != "linux", reason="binds 127.0.0.2: Linux loopback")
@pytest_twisted.ensureDeferred
async def test_the_relay_dials_from_the_endpoints_bind_address() -> None:
    peers: list[Any] = []

    class Recorder(Echo):
        def connectionMade(self) -> None:
            peers.append(self.transport.getPeer())  # type: ignore[union-attr]
            super().connectionMade()

    s = Servers()
    echo = EchoFactory()
    echo.protocol = Recorder
    try:
        target = await s.listen(echo)
        relay = Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:{target}:bindAddress=127.0.0.2")
        s.relays.append(relay)
        port: Any = await relay.start()
        c = await connectClient(port.getHost().port)
        assert await within(c.roundTrip(b"from where?"), 5) == b"from where?"
        c.transport.loseConnection()  # type: ignore[union-attr]
        await within(c.closed, 5)
        assert [p.host for p in peers] == ["127.0.0.2"]
    finally:
        await waitUntil(lambda: echo.open == 0, 5)
        await s.close()


@pytest_twisted.ensureDeferred
async def test_stop_while_dialling_a_tcp_target_closes_everything() -> None:
    target = Unanswered()
    relay = Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:{target.port}")
    try:
        port: Any = await relay.start()
        before = fdCount()
        c = await connectClient(port.getHost().port)
        await waitUntil(lambda: relay.stats.active == 1, 5)
        assert [conn.state for conn in relay.connections] == ["dialling"]
        await within(relay.stop(), 5)
        await within(c.closed, 5)
        assert relay.stats.active == 0 and relay.stats.failedDials == 0
        # The relay's listening socket, the accepted one and the dialling one are closed
        # (and conftest checks that the dial's timeout left no DelayedCall behind).
        assert fdCount() < before
    finally:
        await relay.stop()
        target.close()


@pytest.mark.skipif(sys.platform != "linux", reason="descriptor numbers and limits: Linux")
@pytest_twisted.ensureDeferred
async def test_out_of_descriptors_the_relay_waits_then_accepts() -> None:
    """
    When accept fails for want of descriptors, the relay stops polling its listening socket
    (which would spin), says so once, and accepts again a moment later.
    """
    import resource

    from twisted.logger import globalLogPublisher

    warnings: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if "cannot accept" in str(event.get("log_format", "")):
            warnings.append(event["log_format"])

    s = Servers()
    echo = EchoFactory()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    client = socket.socket()
    globalLogPublisher.addObserver(observe)
    try:
        relay, port = await s.relay(await s.listen(echo))
        probe = os.dup(0)  # the lowest free descriptor number ...
        os.close(probe)
        # ... is the limit: no new descriptor now, for the relay's accept either.
        resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
        try:
            client.setblocking(False)
            client.connect_ex((HOST, port))
            await waitUntil(lambda: bool(warnings), 10, "the relay to run out of descriptors")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert relay.stats.total == 0
        await waitUntil(lambda: relay.stats.total == 1, 10, "the relay to accept again")

        def exchange() -> bytes:
            client.settimeout(10)
            client.sendall(b"ping")
            return client.recv(4)

        assert await within(deferToThread(exchange), 10) == b"ping"
        assert len(warnings) == 1
    finally:
        globalLogPublisher.removeObserver(observe)
        client.close()
        await waitUntil(lambda: echo.open == 0, 10)
        await s.close()


@pytest_twisted.ensureDeferred
async def test_refused_target_closes_the_client_promptly() -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        deadPort = probe.getsockname()[1]
    relay = Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:{deadPort}")
    port: Any = await relay.start()
    try:
        before = fdCount()
        c = await connectClient(port.getHost().port)
        t0 = time.monotonic()
        await within(c.closed, 5)
        assert time.monotonic() - t0 < 2
        assert not c.data
        await waitUntil(lambda: relay.stats.active == 0, 5)
        assert relay.stats.failedDials == 1
        assert fdCount() <= before
    finally:
        await relay.stop()


@pytest.mark.parametrize("splice", PATHS)
@pytest.mark.parametrize("resetter", ["target", "client"])
@pytest_twisted.ensureDeferred
async def test_reset_mid_transfer_closes_the_other_side(splice: bool, resetter: str) -> None:
    s = Servers()
    try:
        if resetter == "target":
            serverF = PeerFactory(abortAfterReceiving=2 * MiB)
            clientF = PeerFactory(send=256 * MiB)
        else:
            serverF = PeerFactory()
            clientF = PeerFactory(send=256 * MiB, abortAfterSending=2 * MiB)
        relay, port = await s.relay(await s.listen(serverF), splice=splice)
        before = fdCount()
        client: Peer = await connect(port, clientF)
        await within(client.closed, 10)
        await waitUntil(lambda: bool(serverF.made) and not serverF.peers, 10, "the server to close")
        server = serverF.made[0]
        await waitUntil(lambda: relay.stats.active == 0, 10)
        if resetter == "target":
            # The relay passed the reset on: the client did not get to send everything.
            assert client.sent < 256 * MiB
            assert client.reason is not None and not client.reason.check(ConnectionDone)
        else:
            assert server.received < 256 * MiB
            assert server.reason is not None and not server.reason.check(ConnectionDone)
        assert relay.stats.spliced == (1 if splice else 0)
        # Stopped, the relay has closed its listening socket and its idle pipes too.
        await relay.stop()
        assert fdCount() < before
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_stop_aborts_open_connections_and_stops_listening() -> None:
    s = Servers()
    echo = EchoFactory()
    relay, port = await s.relay(await s.listen(echo))
    clients = [await connectClient(port) for _ in range(3)]
    for c in clients:
        assert await within(c.roundTrip(b"x"), 5) == b"x"
    assert relay.stats.active == 3
    await within(relay.stop(), 5)
    assert relay.port is None and relay.stats.active == 0
    await within(gatherResults([c.closed for c in clients]), 5)
    await waitUntil(lambda: echo.open == 0, 5)
    with pytest.raises(ConnectionRefusedError):
        await connectClient(port)
    await s.close()


@pytest_twisted.ensureDeferred
async def test_as_a_service() -> None:
    s = Servers()
    echo = EchoFactory()
    target = await s.listen(echo)
    relay = Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:{target}")
    relay.startService()
    port: Any = await within(relay.listening, 5)
    assert relay.running and relay.port is port
    c = await connectClient(port.getHost().port)
    assert await within(c.roundTrip(b"service"), 5) == b"service"
    await within(relay.stopService(), 5)
    assert not relay.running
    await within(c.closed, 5)
    await waitUntil(lambda: echo.open == 0, 5)
    await s.close()


@pytest.mark.skipif(not HAVE_SPLICE, reason="no os.splice on this platform")
@pytest_twisted.ensureDeferred
async def test_unix_listener_to_tcp_target_is_spliced(tmp_path: Any) -> None:
    s = Servers()
    serverF = PeerFactory(replyAfterEOF=MiB + 5, offset=12345)
    target = await s.listen(serverF)
    path = str(tmp_path / "relay.sock")
    relay = Relay(f"unix:{path}", f"tcp:{HOST}:{target}", splice=True)
    await relay.start()
    try:
        from twisted.internet.endpoints import UNIXClientEndpoint

        ep = UNIXClientEndpoint(R, path)
        client: Peer = await within(ep.connect(PeerFactory(send=2 * MiB + 1)), 10)
        await within(client.closed, 30)
        await waitUntil(lambda: relay.stats.active == 0 and not serverF.peers, 10)
        assert relay.stats.spliced == 1
        assert serverF.made[0].digest == patternDigest(0, 2 * MiB + 1)
        assert client.digest == patternDigest(12345, MiB + 5)
    finally:
        await relay.stop()
        await s.close()


def test_bare_port_listens_on_loopback() -> None:
    relay = Relay(8080, f"tcp:{HOST}:9")
    assert relay.listenDescription == "tcp:8080:interface=127.0.0.1"
    assert Relay("8080", f"tcp:{HOST}:9").listenDescription == relay.listenDescription


def test_splice_true_needs_plain_endpoints() -> None:
    with pytest.raises(ValueError, match="plain TCP or UNIX"):
        Relay("stdio:", f"tcp:{HOST}:9", splice=True)

    @implementer(IStreamClientEndpoint)
    class Custom:
        def connect(self, factory: Factory) -> Deferred[Any]:
            raise NotImplementedError

    with pytest.raises(ValueError, match="plain TCP or UNIX"):
        Relay(f"tcp:0:interface={HOST}", Custom(), splice=True)
    # Not forced: the portable path.
    assert not Relay(f"tcp:0:interface={HOST}", Custom()).usesSplice
    assert Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:9").usesSplice == HAVE_SPLICE
    assert not Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:9", splice=False).usesSplice


def test_splice_true_without_os_splice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relaymod, "spliceAvailable", lambda: False)
    with pytest.raises(RuntimeError, match="os.splice"):
        Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:9", splice=True)
    assert not Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:9").usesSplice


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="bufferSize"):
        Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:9", bufferSize=10)
    with pytest.raises(ValueError, match="maxConnections"):
        Relay(f"tcp:0:interface={HOST}", f"tcp:{HOST}:9", maxConnections=0)


def test_example_runs() -> None:
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "relay.py")
    out = subprocess.run(
        [sys.executable, example, "--size", "8M"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verified" in out.stdout


def listenQueue(port: int) -> int:
    """The listen queue (backlog) of the listening socket on ``port``, as ``ss`` reports it."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    # State Recv-Q Send-Q ...: for a listening socket Send-Q is its backlog.
    return int(out[2])


BURST = 1500


@pytest.mark.timeout(180)
@pytest.mark.parametrize("splice", PATHS)
@pytest_twisted.ensureDeferred
async def test_a_burst_of_concurrent_connects_all_succeed(splice: bool) -> None:
    """
    1,500 clients connect at once (all their SYNs leave before the relay accepts one): every
    one is relayed. The listen queue holds the burst, so none waits on a SYN retransmission.
    """
    import resource

    needed = BURST * (7 if splice else 4) + 200  # client + relay sides (+ pipes) + server
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < needed:
        pytest.skip(f"needs {needed} open files; the hard limit (ulimit -Hn) is lower")
    s = Servers()
    echo = EchoFactory()
    clients: list[Client] = []
    try:
        relay, port = await s.relay(await s.listen(echo), splice=splice, maxConnections=BURST)
        assert relay.maxConnections == BURST
        if shutil.which("ss"):
            assert listenQueue(port) >= min(BURST, somaxconn())
        ep = TCP4ClientEndpoint(R, HOST, port)

        async def one(i: int) -> bytes:
            c: Client = await ep.connect(Factory.forProtocol(Client))
            clients.append(c)
            reply = await c.roundTrip(b"%d" % i)
            c.transport.loseConnection()  # type: ignore[union-attr]
            await c.closed
            return reply

        replies = await within(gatherResults([ensureDeferred(one(i)) for i in range(BURST)]), 150)
        assert replies == [b"%d" % i for i in range(BURST)]
        await waitUntil(lambda: relay.stats.active == 0 and echo.open == 0, 30)
        stats = relay.stats
        assert (stats.total, stats.refused, stats.failedDials) == (BURST, 0, 0)
        assert stats.spliced == (BURST if splice else 0)
    finally:
        for c in clients:
            if c.transport is not None:
                c.transport.loseConnection()
        await s.close()


def somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())
