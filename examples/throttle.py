"""
A fast producer throttled by a slow TCP reader through a ``ProducerConsumerProxy``.

Run it as::

    python examples/throttle.py [--size BYTES] [--chunk BYTES] [--high BYTES]

A local server on 127.0.0.1 reads slowly at first (it stops reading, then reads in short
bursts) and then at full speed. A producer writes ``--size`` bytes as fast as it is
allowed through a ``ProducerConsumerProxy`` into the client's TCP transport. The proxy
pauses the producer when it holds ``--high`` bytes and resumes it at half that; the
script prints how often that happened, the most the proxy held, and whether the SHA-256
of what the server received matches what was sent. Exit status 0 means every byte
arrived, in order. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit import ProducerConsumerProxy, TransportConsumer

# Distinct chunk contents, cycled with a prime period so that a lost, repeated or
# reordered chunk changes the digest.
PATTERN_PERIOD = 17


class SlowReader(Protocol):
    """The server side: stops reading, reads in short bursts, then reads flat out."""

    def __init__(self, clock: Any, steps: int, gap: float, burst: float) -> None:
        self.clock = clock
        self.steps = steps
        self.gap = gap
        self.burst = burst
        self.sha = hashlib.sha256()
        self.received = 0
        self.done: defer.Deferred[tuple[int, str]] = defer.Deferred()
        self._step: Any = None

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self._step = self.clock.callLater(self.gap, self._read)

    def _read(self) -> None:
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self.steps -= 1
        if self.steps > 0:
            self._step = self.clock.callLater(self.burst, self._stop)
        else:
            self._step = None  # from now on, read as fast as data comes

    def _stop(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self._step = self.clock.callLater(self.gap, self._read)

    def dataReceived(self, data: bytes) -> None:
        self.sha.update(data)
        self.received += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._step is not None and self._step.active():
            self._step.cancel()
        self.done.callback((self.received, self.sha.hexdigest()))


class Client(Protocol):
    def __init__(self) -> None:
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


@implementer(IPushProducer)
class FastProducer:
    """Writes ``total`` bytes as fast as it is allowed: every reactor turn, until paused."""

    def __init__(self, clock: Any, proxy: ProducerConsumerProxy, total: int, chunk: int) -> None:
        self.clock = clock
        self.proxy = proxy
        self.remaining = total
        rng = random.Random(1)
        self.blocks = [rng.randbytes(chunk) for _ in range(PATTERN_PERIOD)]
        self.index = 0
        self.sha = hashlib.sha256()
        self.paused = False
        self.pauses = self.resumes = 0
        self.maxBuffered = 0
        self._call: Any = None

    def start(self) -> None:
        self.proxy.registerProducer(self, True)
        self._schedule()

    def _schedule(self) -> None:
        if self._call is None and self.remaining:
            self._call = self.clock.callLater(0, self._produce)

    def _produce(self) -> None:
        self._call = None
        budget = 64  # chunks per turn: let the reactor do I/O in between
        while not self.paused and self.remaining and budget:
            budget -= 1
            block = self.blocks[self.index % PATTERN_PERIOD]
            self.index += 1
            data = block[: self.remaining]
            self.remaining -= len(data)
            self.sha.update(data)
            self.proxy.write(data)
            self.maxBuffered = max(self.maxBuffered, self.proxy.bufferedBytes)
        if not self.remaining:
            self.proxy.finish()  # completes once the proxy has drained
        elif not self.paused:
            self._schedule()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1
        self._schedule()

    def stopProducing(self) -> None:
        self.remaining = 0
        if self._call is not None:
            self._call.cancel()
            self._call = None


@dataclass
class Result:
    sent: int
    received: int
    sentDigest: str
    receivedDigest: str
    pauses: int
    resumes: int
    maxBuffered: int
    bound: int
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.sent == self.received
            and self.sentDigest == self.receivedDigest
            and self.maxBuffered <= self.bound
        )


async def transfer(
    reactor: Any,
    size: int,
    chunk: int = 65536,
    high: int = 262144,
    slowSteps: int = 8,
    gap: float = 0.05,
    burst: float = 0.01,
) -> Result:
    """Send ``size`` bytes through a proxy to a slow local reader; report what happened."""
    servers: list[SlowReader] = []

    def buildServer() -> SlowReader:
        server = SlowReader(reactor, slowSteps, gap, burst)
        servers.append(server)
        return server

    port = reactor.listenTCP(0, Factory.forProtocol(buildServer), interface="127.0.0.1")
    try:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        client = await connectProtocol(endpoint, Client())
        started = time.monotonic()
        proxy = ProducerConsumerProxy(TransportConsumer(client.transport), highWatermark=high)
        producer = FastProducer(reactor, proxy, size, chunk)
        producer.start()
        await client.closed
        for _ in range(100):  # the accept may lag the client on a tiny, fast run
            if servers:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        received, digest = await servers[0].done
        seconds = time.monotonic() - started
    finally:
        await port.stopListening()
    return Result(
        sent=size,
        received=received,
        sentDigest=producer.sha.hexdigest(),
        receivedDigest=digest,
        pauses=producer.pauses,
        resumes=producer.resumes,
        maxBuffered=producer.maxBuffered,
        bound=high + chunk,
        seconds=seconds,
    )


def report(result: Result, chunk: int, high: int) -> list[str]:
    rate = result.received / max(result.seconds, 1e-9) / 2**20
    return [
        f"sent {result.sent} bytes in chunks of {chunk} through "
        f"ProducerConsumerProxy(highWatermark={high}, lowWatermark={high // 2})",
        f"producer paused {result.pauses} times, resumed {result.resumes} times",
        f"proxy held at most {result.maxBuffered} bytes "
        f"(bound: high watermark + one chunk = {result.bound})",
        f"received {result.received} bytes in {result.seconds:.2f} s ({rate:.1f} MiB/s)",
        f"sha256 sent     {result.sentDigest}",
        f"sha256 received {result.receivedDigest}",
        "OK: every byte arrived, in order"
        if result.ok
        else "FAILED: the data or the bound did not match",
    ]


def parseArgs(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--size", type=int, default=32 * 2**20, help="bytes to send")
    parser.add_argument("--chunk", type=int, default=65536, help="bytes per write")
    parser.add_argument("--high", type=int, default=262144, help="high watermark")
    args = parser.parse_args(argv)
    for name in ("size", "chunk", "high"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the transfer on the reactor and exit 0 if every byte arrived, else 1."""
    args = parseArgs(argv)

    async def run(reactor: Any) -> None:
        result = await transfer(reactor, args.size, args.chunk, args.high)
        for line in report(result, args.chunk, args.high):
            print(line, flush=True)
        if not result.ok:
            raise SystemExit(1)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main(sys.argv[1:])
