"""Real TCP servers on 127.0.0.1 for the adapter tests."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol


class EchoServerProtocol(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


class ResetAfter(Protocol):
    """Reads ``limit`` bytes, then resets the connection (RST, not FIN)."""

    limit = 1024 * 1024

    def connectionMade(self) -> None:
        self.seen = 0

    def dataReceived(self, data: bytes) -> None:
        self.seen += len(data)
        if self.seen >= self.limit:
            sock = self.transport.getHandle()  # type: ignore[union-attr]
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abortConnection()  # type: ignore[union-attr]


class Recorder(Protocol):
    """Keeps what it receives; fires ``factory.done`` with it when the peer closes."""

    def connectionMade(self) -> None:
        self.chunks: list[bytes] = []
        self.factory.connected.append(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: object = None) -> None:
        self.factory.done.callback(b"".join(self.chunks))  # type: ignore[attr-defined]


class Streamer(Protocol):
    """Writes ``factory.total`` bytes of a known pattern as a streaming producer, then closes."""

    chunk = bytes(range(256)) * 256

    def connectionMade(self) -> None:
        self.sent = 0
        self.paused = False
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        total = self.factory.total  # type: ignore[attr-defined]
        while not self.paused and self.sent < total:
            self.transport.write(self.chunk)  # type: ignore[union-attr]
            self.sent += len(self.chunk)
        if self.sent >= total:
            self.transport.unregisterProducer()  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        self.paused = True


@asynccontextmanager
async def server(
    protocol: Callable[[], Protocol], **attrs: Any
) -> AsyncIterator[tuple[int, Factory]]:
    """Listen on 127.0.0.1:0; yield (port, factory); stop listening and drop connections."""
    factory = Factory.forProtocol(protocol)
    factory.connected = []  # type: ignore[attr-defined]
    factory.done = Deferred()  # type: ignore[attr-defined]
    for k, v in attrs.items():
        setattr(factory, k, v)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:
        yield port.getHost().port, factory
    finally:
        await port.stopListening()


def freePort() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port
