"""TransportConsumer: a proxy streaming into a real TCP connection, closed after the last byte."""

from __future__ import annotations

import hashlib
import os

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.interfaces import IConsumer, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pcpkit import ProducerConsumerProxy, TransportConsumer


class Sink(Protocol):
    """Reads everything, hashes it, answers the digest when the peer half-closes."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.count = 0
        self.done: defer.Deferred[tuple[int, str]] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.sha.update(data)
        self.count += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback((self.count, self.sha.hexdigest()))


@implementer(IHalfCloseableProtocol)
class Answering(Sink):
    def readConnectionLost(self) -> None:
        self.transport.write(self.sha.hexdigest().encode())  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass


@implementer(IHalfCloseableProtocol)
class Sender(Protocol):
    def __init__(self) -> None:
        self.answer = b""
        self.closed: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.answer += data

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(self.answer)


async def connect(server: type[Sink]) -> tuple[Sink, Sender, object]:
    accepted: defer.Deferred[Sink] = defer.Deferred()

    def build() -> Sink:
        sink = server()
        accepted.callback(sink)
        return sink

    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(build)
    )
    sender = Sender()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), sender)
    return await accepted, sender, port


def test_is_a_consumer() -> None:
    assert verifyObject(IConsumer, TransportConsumer(object()))


@pytest_twisted.ensureDeferred
async def test_proxy_finish_closes_after_the_last_byte() -> None:
    sink, sender, port = await connect(Sink)
    assert sender.transport is not None
    proxy = ProducerConsumerProxy(TransportConsumer(sender.transport), highWatermark=64 * 1024)
    data = os.urandom(3 * 1024 * 1024)
    for i in range(0, len(data), 100_000):  # far past the watermark: all buffered
        proxy.write(data[i : i + 100_000])
    proxy.finish()
    count, digest = await sink.done
    assert count == len(data) and digest == hashlib.sha256(data).hexdigest()
    await sender.closed
    await port.stopListening()  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_half_close_lets_the_peer_answer() -> None:
    sink, sender, port = await connect(Answering)
    assert sender.transport is not None
    consumer = TransportConsumer(sender.transport, halfClose=True)
    data = os.urandom(200_000)
    proxy = ProducerConsumerProxy(consumer)
    proxy.write(data)
    proxy.finish()
    answer = await sender.closed
    assert answer == hashlib.sha256(data).hexdigest().encode()
    assert consumer.finished
    consumer.finish()  # a second finish does nothing
    await sink.done
    await port.stopListening()  # type: ignore[attr-defined]
