"""
ProducerConsumerProxy over real TCP on 127.0.0.1, and the throttle example.

A push producer writes 64 MiB as fast as it is allowed (a cooperative loop on
``reactor.callLater(0, ...)`` that writes while not paused) through one or three proxies
into a client transport. The server stops reading, then reads in short steps, then reads
flat out. Every byte must arrive in order (SHA-256 of a non-repeating-looking pattern) and
no proxy may ever hold more than its high watermark plus one chunk.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit.pcp import ProducerConsumerProxy

reactor: Any = _reactor
ROOT = Path(__file__).resolve().parents[1]

TOTAL = 64 * 2**20
CHUNK = 64 * 1024
HIGH = 256 * 1024


class SlowThenFastReader(Protocol):
    """Stops reading at once; reads in ``steps`` short bursts; then reads flat out."""

    def __init__(self, steps: int = 10, gap: float = 0.05, burst: float = 0.005) -> None:
        self.steps, self.gap, self.burst = steps, gap, burst
        self.sha = hashlib.sha256()
        self.received = 0
        self.receivedWhileSlow = 0
        self.slow = True
        self.done: defer.Deferred[None] = defer.Deferred()
        self._call: Any = None

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self._call = reactor.callLater(self.gap, self._read)

    def _read(self) -> None:
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self.steps -= 1
        if self.steps:
            self._call = reactor.callLater(self.burst, self._pause)
        else:
            self._call = None
            self.slow = False

    def _pause(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self._call = reactor.callLater(self.gap, self._read)

    def dataReceived(self, data: bytes) -> None:
        self.sha.update(data)
        self.received += len(data)
        if self.slow:
            self.receivedWhileSlow += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self.done.callback(None)


class Client(Protocol):
    def __init__(self) -> None:
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


class ClosingConsumer:
    """The client transport as a consumer whose ``finish()`` closes the connection."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.write = transport.write
        self.writeSequence = transport.writeSequence
        self.registerProducer = transport.registerProducer
        self.unregisterProducer = transport.unregisterProducer

    def finish(self) -> None:
        self.transport.loseConnection()


@implementer(IPushProducer)
class FastProducer:
    def __init__(self, proxies: list[ProducerConsumerProxy], total: int) -> None:
        self.proxies = proxies
        self.head = proxies[0]
        self.remaining = total
        rng = random.Random(7)
        # 13 distinct chunks cycled: a lost, repeated or swapped chunk changes the digest.
        self.blocks = [rng.randbytes(CHUNK) for _ in range(13)]
        self.index = 0
        self.sha = hashlib.sha256()
        self.paused = False
        self.pauses = 0
        self.maxBuffered = [0] * len(proxies)
        self._call: Any = None

    def start(self) -> None:
        self.head.registerProducer(self, True)
        self._schedule()

    def _schedule(self) -> None:
        if self._call is None and self.remaining:
            self._call = reactor.callLater(0, self._produce)

    def _produce(self) -> None:
        self._call = None
        for _ in range(32):
            if self.paused or not self.remaining:
                break
            data = self.blocks[self.index % 13][: self.remaining]
            self.index += 1
            self.remaining -= len(data)
            self.sha.update(data)
            self.head.write(data)
            self._record()
        if not self.remaining:
            self.head.finish()
        elif not self.paused:
            self._schedule()

    def _record(self) -> None:
        for i, proxy in enumerate(self.proxies):
            if proxy.bufferedBytes > self.maxBuffered[i]:
                self.maxBuffered[i] = proxy.bufferedBytes

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self._record()  # the flushes a resume triggers moved bytes between hops
        self._schedule()

    def stopProducing(self) -> None:
        self.remaining = 0
        if self._call is not None:
            self._call.cancel()
            self._call = None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("hops", [1, 3])
@pytest_twisted.ensureDeferred
async def test_64MiB_through_proxies_to_a_slow_then_fast_reader(hops: int) -> None:
    servers: list[SlowThenFastReader] = []

    def build() -> SlowThenFastReader:
        servers.append(SlowThenFastReader())
        return servers[-1]

    port = reactor.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
    try:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        client = await connectProtocol(endpoint, Client())
        # Build from the transport end: each proxy registers on the next one.
        consumer: Any = ClosingConsumer(client.transport)
        proxies: list[ProducerConsumerProxy] = []
        for _ in range(hops):
            consumer = ProducerConsumerProxy(consumer, highWatermark=HIGH)
            proxies.insert(0, consumer)
        producer = FastProducer(proxies, TOTAL)
        producer.start()
        await defer.gatherResults([client.closed]).addTimeout(100, reactor)
        for _ in range(100):  # the accept may lag the client on a loaded machine
            if servers:
                break
            await deferLater(reactor, 0.01, lambda: None)
        await servers[0].done.addTimeout(10, reactor)
    finally:
        await port.stopListening()

    server = servers[0]
    assert server.received == TOTAL
    assert server.sha.hexdigest() == producer.sha.hexdigest()
    # The slow phase really throttled the producer, and no hop ever held more than its
    # high watermark plus one chunk.
    assert producer.pauses > 0
    assert server.receivedWhileSlow < TOTAL
    for held in producer.maxBuffered:
        assert 0 < held <= HIGH + CHUNK, producer.maxBuffered
    assert all(p.bufferedBytes == 0 and p.producer is None for p in proxies)


@pytest.mark.timeout(60)
def test_throttle_example_runs_and_every_byte_arrives() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "throttle.py"),
            "--size",
            str(3 * 2**20 + 12345),
            "--chunk",
            "32768",
            "--high",
            "131072",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "OK: every byte arrived, in order" in out
    paused = re.search(r"producer paused (\d+) times, resumed (\d+) times", out)
    assert paused is not None, out
    sent = re.search(r"sha256 sent +([0-9a-f]{64})", out)
    received = re.search(r"sha256 received +([0-9a-f]{64})", out)
    assert sent and received and sent.group(1) == received.group(1)
    assert f"received {3 * 2**20 + 12345} bytes" in out
    held = re.search(r"proxy held at most (\d+) bytes", out)
    assert held is not None and int(held.group(1)) <= 131072 + 32768


class ClosingSink(Protocol):
    """Reads ``limit`` bytes, then closes its connection: the reader went away."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= self.limit:
            self.transport.loseConnection()  # type: ignore[union-attr]


class Forwarder(Protocol):
    """Writes everything it receives into ``proxy``, as a relay's ``dataReceived`` does."""

    def __init__(self, proxy: ProducerConsumerProxy) -> None:
        self.proxy = proxy
        self.received = 0
        self.writtenAfterStop = 0
        self.reason: Failure | None = None
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.proxy.stopped:
            self.writtenAfterStop += len(data)
        self.proxy.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)


class LosingClient(Client):
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_writes_after_the_consumer_disconnects_are_discarded() -> None:
    # sender -> Forwarder.dataReceived -> proxy -> TCP -> ClosingSink. The sink hangs up
    # after 64 KiB; its transport stops the proxy; the forwarder keeps receiving and
    # writing, and those writes are dropped and counted instead of failing dataReceived
    # (which would tear the *sender's* connection down with an error).
    sinkPort = reactor.listenTCP(
        0, Factory.forProtocol(lambda: ClosingSink(64 * 1024)), interface="127.0.0.1"
    )
    forwarders: list[Forwarder] = []
    forwardPort: Any = None
    try:
        out = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", sinkPort.getHost().port), LosingClient()
        )
        proxy = ProducerConsumerProxy(out.transport)

        def build() -> Forwarder:
            forwarders.append(Forwarder(proxy))
            return forwarders[-1]

        forwardPort = reactor.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
        sender = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", forwardPort.getHost().port), Client()
        )
        half = 1024 * 1024
        sender.transport.write(b"a" * half)  # type: ignore[union-attr]
        await out.closed.addTimeout(20, reactor)  # the sink hung up: the proxy is stopped
        assert proxy.stopped
        sender.transport.write(b"b" * half)  # type: ignore[union-attr]
        sender.transport.loseConnection()  # type: ignore[union-attr]
        await forwarders[0].lost.addTimeout(20, reactor)
        await sender.closed
    finally:
        await sinkPort.stopListening()
        if forwardPort is not None:
            await forwardPort.stopListening()
    forwarder = forwarders[0]
    # A clean close: dataReceived never raised.
    assert forwarder.reason is not None and forwarder.reason.check(ConnectionDone)
    assert forwarder.received == 2 * half
    assert forwarder.writtenAfterStop >= half
    assert proxy.discardedBytes == forwarder.writtenAfterStop
