"""
A flow-controlled TCP relay in front of a local server.

    python examples/relay.py                    # 256 MiB through the relay, then exit
    python examples/relay.py --size 1G --splice off

It starts, all on 127.0.0.1: a *sink* server that hashes what it receives and, once the
client has shut its write side, replies with the SHA-256 it computed (a half-close); a
``Relay`` in front of it; and a client that streams ``--size`` bytes through the relay,
shuts its write side, and checks the reply against its own hash.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import react
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit.internet.relay import Relay

BLOCK = 1 << 20


@implementer(IHalfCloseableProtocol)
class Sink(Protocol):
    """Hashes everything; after the peer's end of stream, replies with the hash and closes."""

    def connectionMade(self) -> None:
        self.hash = hashlib.sha256()

    def dataReceived(self, data: bytes) -> None:
        self.hash.update(data)

    def readConnectionLost(self) -> None:
        transport: Any = cast(Any, self.transport)
        transport.write(self.hash.hexdigest().encode())
        transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


@implementer(IHalfCloseableProtocol)
class Sender(Protocol):
    """Streams ``size`` bytes as a pull producer, shuts its write side, reads the reply."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.hash = hashlib.sha256()
        self.block = os.urandom(BLOCK)
        self.reply = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.t: Any = cast(Any, self.transport)
        self.t.registerProducer(self, False)  # pull: called whenever the buffer is empty

    def resumeProducing(self) -> None:
        if self.sent >= self.size:
            self.t.unregisterProducer()
            self.t.loseWriteConnection()  # the half-close: "that was everything"
            return
        data = self.block[: self.size - self.sent]
        self.hash.update(data)
        self.t.write(data)
        self.sent += len(data)

    def stopProducing(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        self.reply += data

    def readConnectionLost(self) -> None:
        self.t.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.reply)


def parseSize(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


async def run(reactor: Any, size: int, splice: bool | None) -> int:
    sinkEndpoint: Any = TCP4ServerEndpoint
    sinkPort = await sinkEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(Sink)
    )
    relay = Relay(
        "tcp:0:interface=127.0.0.1",
        f"tcp:127.0.0.1:{sinkPort.getHost().port}",
        splice=splice,
        reactor=reactor,
    )
    relayPort: Any = await relay.start()
    path = "splice" if relay.usesSplice else "portable"
    print(f"relay 127.0.0.1:{relayPort.getHost().port} -> sink, {path} path")
    sender = Sender(size)
    started = time.perf_counter()
    client: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", relayPort.getHost().port)
    await client.connect(Factory.forProtocol(lambda: sender))
    reply = await sender.done
    elapsed = time.perf_counter() - started
    await relay.stop()
    await sinkPort.stopListening()
    stats = relay.stats
    print(
        f"{size} bytes in {elapsed:.2f} s: {size / elapsed / 1e6:.0f} MB/s; "
        f"relay held at most {stats.toTarget.peakBuffered} bytes, "
        f"paused the sender {stats.toTarget.pauses} times"
    )
    if reply.decode() != sender.hash.hexdigest():
        print(f"MISMATCH: sent {sender.hash.hexdigest()}, sink got {reply.decode()!r}")
        return 1
    print(f"verified: the sink's SHA-256 matches ({reply.decode()[:16]}...)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parseSize, default=256 << 20, help="e.g. 64M, 1G")
    parser.add_argument(
        "--splice", choices=["auto", "on", "off"], default="auto", help="the splice fast path"
    )
    args = parser.parse_args(argv)
    splice = {"auto": None, "on": True, "off": False}[args.splice]
    result: list[int] = []

    async def body(reactor: Any) -> None:
        result.append(await run(reactor, args.size, splice))

    try:
        react(lambda reactor: Deferred.fromCoroutine(body(reactor)))
    except SystemExit as e:
        if e.code:
            return int(e.code)
    return result[0] if result else 1


if __name__ == "__main__":
    sys.exit(main())
