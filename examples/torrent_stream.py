"""
Stream a torrent's file in order while it downloads, with ``streamFile``.

    python examples/torrent_stream.py                      # 16 MiB, no network
    python examples/torrent_stream.py --size 64 --rate 20  # a consumer taking 20 MB/s
    python examples/torrent_stream.py --output copy.bin    # also write the stream to a file

Everything runs on 127.0.0.1 in one process: a random payload is written into a temporary
folder and a torrent made of it (256 KiB pieces); one
:class:`~pcpkit.torrent.session.TorrentSession` seeds it, a second one adds the torrent,
connects to the seed and -- at once, before any piece has arrived -- starts
:func:`~pcpkit.torrent.stream.streamFile` into a consumer that hashes what it gets (and, with
``--output``, writes it to a file).

``streamFile`` registers a push producer on the consumer. It gives the next pieces of the
file a deadline (``set_piece_deadline``), so libtorrent fetches them first, re-orders the
``read_piece_alert`` s it gets back, and writes the bytes in order. The consumer here
honours flow control like a transport: with ``--rate`` it pauses the producer whenever it
is ahead of that rate and resumes it when it has caught up, and the producer then holds at
most its window of pieces, however far ahead the download is. Progress lines show both:
how much has been streamed and how much has been downloaded.

At the end the stream's SHA-256 is compared with the payload's; exit status 0 when equal.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import IO, Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IConsumer
from twisted.internet.task import react
from zope.interface import implementer

from pcpkit.torrent.ipc import formatBytes
from pcpkit.torrent.maker import makeTorrent
from pcpkit.torrent.session import TorrentSession
from pcpkit.torrent.stream import TorrentFileProducer, streamFile

MiB = 1024 * 1024
PIECE_SIZE = 256 * 1024


@implementer(IConsumer)
class HashingConsumer:
    """
    An ``IConsumer`` that hashes (and optionally saves) what it is given, in order.

    :param rate: bytes per second it takes, or ``None`` for as fast as it comes. When it is
        ahead of the rate it pauses its producer and resumes it once it is back on time.
    :param onProgress: called every ``every`` bytes with the byte count so far.
    """

    def __init__(self, reactor: Any, rate: float | None, out: IO[bytes] | None,
                 onProgress: Any, every: int) -> None:
        self.reactor = reactor
        self.rate = rate
        self.out = out
        self.onProgress = onProgress
        self.every = every
        self.hash = hashlib.sha256()
        self.received = 0
        self.pauses = 0
        self.producer: Any = None
        self.lastProducer: Any = None
        self.started = 0.0
        self._resumeCall: Any = None
        self._nextReport = every

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = self.lastProducer = producer

    def unregisterProducer(self) -> None:
        self.producer = None
        if self._resumeCall is not None and self._resumeCall.active():
            self._resumeCall.cancel()

    def write(self, data: bytes) -> None:
        if not self.received:
            self.started = time.monotonic()  # the rate counts from the first byte
        self.hash.update(data)
        if self.out is not None:
            self.out.write(data)
        self.received += len(data)
        while self.received >= self._nextReport:
            self.onProgress(self._nextReport)
            self._nextReport += self.every
        if self.rate and self.producer is not None and self._resumeCall is None:
            ahead = self.received / self.rate - (time.monotonic() - self.started)
            if ahead > 0.01:
                self.pauses += 1
                self.producer.pauseProducing()
                self._resumeCall = self.reactor.callLater(ahead, self._resume)

    def _resume(self) -> None:
        self._resumeCall = None
        if self.producer is not None:
            self.producer.resumeProducing()


async def stream(reactor: Any, args: argparse.Namespace) -> int:
    size = args.size * MiB
    root = tempfile.mkdtemp(prefix="pcpkit-stream-example-")
    seeds: TorrentSession | None = None
    gets: TorrentSession | None = None
    out: IO[bytes] | None = None
    try:
        seedDir, getDir = os.path.join(root, "seed"), os.path.join(root, "download")
        os.makedirs(seedDir)
        os.makedirs(getDir)
        payload = os.path.join(seedDir, "movie.bin")
        want = hashlib.sha256()
        with open(payload, "wb") as f:
            for _ in range(0, size, MiB):
                chunk = os.urandom(min(MiB, size - f.tell()))
                want.update(chunk)
                f.write(chunk)
        raw = makeTorrent(payload, pieceSize=PIECE_SIZE)
        print(f"made a torrent of {formatBytes(size)} in {size // PIECE_SIZE} pieces "
              f"of {PIECE_SIZE // 1024} KiB", flush=True)

        seeds = TorrentSession(1.0, savePath=seedDir)
        gets = TorrentSession(1.0, savePath=getDir)
        await seeds.addTorrent(raw, seed=True)
        print(f"seeding on 127.0.0.1:{seeds.listenPort}", flush=True)

        added = await gets.addTorrent(raw)
        gets.connectPeer(added.torrentid, "127.0.0.1", seeds.listenPort)
        getter = gets
        started = time.monotonic()

        def progress(done: int) -> None:
            st = getter.status(added.torrentid)
            producer = consumer.producer
            held = producer.bufferedBytes if isinstance(producer, TorrentFileProducer) else 0
            print(
                f"  streamed {formatBytes(done):>8} ({100 * done / size:5.1f}%)"
                f"   downloaded {100 * st['fractionDone']:5.1f}%"
                f"   held by the stream {formatBytes(held):>8}"
                f"   {time.monotonic() - started:5.2f}s",
                flush=True,
            )

        if args.output:
            out = open(args.output, "wb")  # noqa: SIM115 - closed in finally
        rate = args.rate * 1e6 if args.rate else None
        consumer = HashingConsumer(reactor, rate, out, progress, max(size // 8, 1))
        print(f"streaming {added.name} in order"
              + (f" into a consumer taking {args.rate:g} MB/s" if rate else ""), flush=True)
        await streamFile(gets, added.torrentid, 0, consumer)
        elapsed = time.monotonic() - started
        got = consumer.hash.hexdigest()
        producer = consumer.lastProducer
        peak = producer.maxBufferedBytes if isinstance(producer, TorrentFileProducer) else 0
        print(f"streamed {formatBytes(consumer.received)} in {elapsed:.2f}s "
              f"({consumer.received / elapsed / 1e6:.1f} MB/s); the consumer paused the "
              f"stream {consumer.pauses} times; the stream held at most {formatBytes(peak)}",
              flush=True)
        if consumer.received != size or got != want.hexdigest():
            print(f"FAILED: streamed {consumer.received} bytes with SHA-256 {got}; the "
                  f"payload is {size} bytes with SHA-256 {want.hexdigest()}")
            return 1
        print(f"OK: {consumer.received} bytes arrived in order; SHA-256 {got} matches "
              "the seeded payload")
        return 0
    finally:
        if out is not None:
            out.close()
        if gets is not None:
            await gets.stop()
        if seeds is not None:
            await seeds.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--size", type=int, default=16, metavar="MIB",
                        help="payload size in MiB (default: 16)")
    parser.add_argument("--rate", type=float, default=None, metavar="MB/S",
                        help="how fast the consumer takes data (default: as fast as it comes)")
    parser.add_argument("--output", metavar="FILE", help="also write the stream to FILE")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be at least 1 (MiB)")

    outcome: list[int] = []

    async def run(reactor: Any) -> None:
        outcome.append(await stream(reactor, args))

    try:
        react(lambda reactor: ensureDeferred(run(reactor)))  # type: ignore[no-untyped-call]
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code)
    if not outcome:
        print("interrupted", file=sys.stderr)
        return 130
    return outcome[0]


if __name__ == "__main__":
    sys.exit(main())
