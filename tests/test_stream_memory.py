"""
Memory of many HTTP streams: each stream holds at most its window, and nothing of a stream
outlives its client. 50 concurrent clients of an 8 MiB file on 127.0.0.1: some read it all
at once, some slowly, some stall and then go, some go early.
"""

from __future__ import annotations

import gc
import hashlib
import socket
import weakref
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from pcpkit.torrent.maker import makeTorrent
from pcpkit.torrent.stream import MIN_WINDOW, READ_AHEAD, TorrentFileProducer
from pcpkit.torrent.web import makeSite
from tests.torrentutil import (
    MiB,
    Sessions,
    reactor,
    sessionsFixture,  # noqa: F401 - the "sessions" fixture
    waitUntil,
    withTimeout,
    writePayload,
)

PIECE = 256 * 1024
SIZE = 8 * MiB


class _Source:
    def __init__(self, session: Any) -> None:
        self.session = session

    def skippedFiles(self) -> list[tuple[str, str]]:
        return []


class Client(Protocol):
    """
    Reads one stream. ``rate`` (bytes/s) paces it by pausing the transport; ``stallAt``
    stops reading at that many bytes for ``stallFor`` seconds and then disconnects;
    ``leaveAt`` disconnects at once at that many bytes.
    """

    def __init__(
        self,
        rate: float | None = None,
        stallAt: int | None = None,
        stallFor: float = 0.0,
        leaveAt: int | None = None,
    ) -> None:
        self.rate = rate
        self.stallAt = stallAt
        self.stallFor = stallFor
        self.leaveAt = leaveAt
        self.body = bytearray()
        self.headers = b""
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.calls: list[Any] = []

    def dataReceived(self, data: bytes) -> None:
        if not self.headers:
            self.body += data
            head, sep, rest = bytes(self.body).partition(b"\r\n\r\n")
            if not sep:
                return
            self.headers, self.body = head, bytearray(rest)
        else:
            self.body += data
        got = len(self.body)
        transport: Any = self.transport
        if self.leaveAt is not None and got >= self.leaveAt:
            self.leaveAt = None
            transport.abortConnection()
        elif self.stallAt is not None and got >= self.stallAt:
            self.stallAt = None
            transport.pauseProducing()
            self.calls.append(reactor.callLater(self.stallFor, transport.abortConnection))
        elif self.rate is not None:
            transport.pauseProducing()
            self.calls.append(reactor.callLater(len(data) / self.rate, transport.resumeProducing))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for call in self.calls:
            if call.active():
                call.cancel()
        self.lost.callback(None)


def smallSendBuffers(channels: Any) -> None:
    for channel in channels:
        channel.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_fifty_streams_hold_their_window_and_leave_nothing(
    sessions: Sessions, tmp_path: Path
) -> None:
    folder = tmp_path / "seed"
    data = writePayload(folder, "clip.bin", SIZE, seed=11)
    raw = makeTorrent(folder / "clip.bin", pieceSize=PIECE)
    session = sessions()
    added = await withTimeout(session.addTorrent(raw, savefolder=str(folder), seed=True), 15)
    site = makeSite(_Source(session))

    started: list[weakref.ref[TorrentFileProducer]] = []
    #: per stream at its end: (most bytes held, largest read-ahead, bound, window at the end)
    ends: list[tuple[int, int, int, int]] = []
    problems: list[str] = []

    def watch(producer: TorrentFileProducer) -> None:
        started.append(weakref.ref(producer))

        def ended(result: object) -> object:
            limit = producer.windowLimit or 0
            ends.append(
                (producer.maxBufferedBytes, producer.maxReadAhead, limit, producer.window or 0)
            )
            if producer.bufferedBytes:
                problems.append(f"a stream still holds {producer.bufferedBytes} bytes")
            return result

        producer.deferred.addBoth(ended)

    site.streams.streamStarted = watch
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    clients: list[Client] = []
    try:
        kinds = (
            [Client() for _ in range(15)]  # read everything as fast as they can
            + [Client(rate=2 * MiB, leaveAt=3 * MiB) for _ in range(15)]  # a slow player
            + [Client(stallAt=MiB // 2, stallFor=2.5) for _ in range(10)]  # pause, then go
            + [Client(leaveAt=MiB // 4) for _ in range(10)]  # go early
        )
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        request = (
            f"GET /stream/{added.infohash}/0 HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
        ).encode()
        for i, client in enumerate(kinds):
            await connectProtocol(endpoint, client)
            assert client.transport is not None
            # small socket buffers at both ends, so that a client that stops reading is
            # felt by its stream within ~100 KiB rather than the megabytes of loopback's
            # autotuned buffers
            client.transport.getHandle().setsockopt(  # type: ignore[attr-defined]
                socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024
            )
            await waitUntil(lambda i=i: len(site.channels) > i, 5, "the server to accept")
            smallSendBuffers(site.channels)  # (no channel left in this frame's locals)
            client.transport.write(request)
            clients.append(client)
        await withTimeout(defer.gatherResults([c.lost for c in clients]), 40)
        await waitUntil(lambda: not site.streams.producers, 10, "every stream to end")
        # the server has seen every client go (an abort is noticed on the next read)
        await waitUntil(lambda: not site.channels, 10, "every connection to close")
    finally:
        site.abortConnections()
        await port.stopListening()

    digest = hashlib.sha256(data).digest()
    for client in clients[:15]:
        assert hashlib.sha256(client.body).digest() == digest
    for client in clients[15:]:
        assert bytes(client.body) == data[: len(client.body)]  # in order, nothing else
    assert not problems, problems
    assert len(started) == len(ends) == 50
    for held, largest, limit, _ in ends:
        # the stream's own accounting: what it held never passed its read-ahead (+ the
        # piece being written), which never passed its window's bound
        assert 0 < held <= (largest + 1) * PIECE, (held, largest)
        assert READ_AHEAD <= largest <= limit == 24
    # the streams of the clients that stalled shrank to the least while they waited
    assert sum(1 for *_, window in ends if window == MIN_WINDOW) >= 10, ends
    # nothing of a stream outlives its client
    assert session._pieceListeners == 0

    def gone() -> bool:
        gc.collect()
        return all(ref() is None for ref in started)

    assert gone()
