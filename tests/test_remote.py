"""
:class:`pcpkit.torrent.remote.RemoteDaemon` against daemons that misbehave: a real HTTP-ish
server on 127.0.0.1 that answers its headers and then stalls, cuts the body short, or
answers something that is not JSON. Each must give one :class:`RemoteError`, in bounded
time, and leave no connection open.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from pcpkit.torrent.remote import RemoteDaemon, RemoteError
from tests.torrentutil import withTimeout


class Canned(Protocol):
    """Answers the first request with ``factory.answer`` and then does ``factory.then``."""

    def connectionMade(self) -> None:
        self.factory.connections.append(self)  # type: ignore[attr-defined]
        self.lost: Deferred[None] = Deferred()
        self.seen = b""

    def dataReceived(self, data: bytes) -> None:
        self.seen += data
        if b"\r\n\r\n" in self.seen:
            self.seen = b""
            self.transport.write(self.factory.answer)  # type: ignore[attr-defined,union-attr]
            if self.factory.then == "close":  # type: ignore[attr-defined]
                self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)


async def serve(answer: bytes, then: str = "stall") -> tuple[Any, Factory]:
    factory = Factory.forProtocol(Canned)
    factory.answer = answer  # type: ignore[attr-defined]
    factory.then = then  # type: ignore[attr-defined]
    factory.connections = []  # type: ignore[attr-defined]
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    return port, factory


async def failsWith(answer: bytes, then: str, *words: str, maxAnswer: int = 1024) -> None:
    port, factory = await serve(answer, then)
    url = f"http://127.0.0.1:{port.getHost().port}"
    remote = RemoteDaemon(url, timeout=0.5, maxAnswer=maxAnswer)
    try:
        with pytest.raises(RemoteError) as caught:
            await withTimeout(Deferred.fromCoroutine(remote.request("GET", "/torrents")), 10)
        message = str(caught.value)
        assert "\n" not in message
        for word in words:
            assert word in message, message
        # the client gave up on the connection: none is left open
        for c in factory.connections:  # type: ignore[attr-defined]
            await withTimeout(c.lost, 10)
    finally:
        await port.stopListening()


FAULTS = {
    # headers, then 2 of the 100 bytes promised, then nothing: the timeout covers the body
    # too (it covered only the headers, and the request waited for good)
    "body stalls": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[]",
        "stall",
        ("no whole answer from the daemon at http://127.0.0.1:", "within 0.5 s"),
    ),
    "no headers": (b"", "stall", ("no whole answer", "within 0.5 s")),
    "body cut short": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[1, 2",
        "close",
        ("cannot reach the daemon", "the answer was cut short"),
    ),
    # more than maxAnswer (1 KiB here): cut off, not held in memory (the timeout is not
    # what ends it: the sender stalls, promising more)
    "too long": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b" " * 5000,
        "stall",
        ("the daemon at http://127.0.0.1:", "sent too much: the answer is over 1024 bytes"),
    ),
    "too long, chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"400\r\n"
        + b" " * 1024
        + b"\r\n"
        + b"1\r\n \r\n",
        "stall",
        ("sent too much: the answer is over 1024 bytes",),
    ),
    "not JSON": (
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\n\r\noops!",
        "stall",
        ("502", "JSON"),
    ),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest_twisted.ensureDeferred
async def test_a_daemon_that_misbehaves_gives_one_line(fault: str) -> None:
    answer, then, words = FAULTS[fault]
    await failsWith(answer, then, *words)


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_a_whole_answer_is_read() -> None:
    port, factory = await serve(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n[1, 2, 3]", "stall")
    try:
        remote = RemoteDaemon(f"http://127.0.0.1:{port.getHost().port}", timeout=5)
        assert await remote.request("GET", "/torrents") == [1, 2, 3]
    finally:
        await port.stopListening()
        for c in factory.connections:  # type: ignore[attr-defined]
            c.transport.loseConnection()
            await withTimeout(c.lost, 10)
