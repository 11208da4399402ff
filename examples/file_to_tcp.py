"""
Kamaelia's documented example, as written, against a local server:

    Pipeline(RateControlledFileReader("myfile", rate=100000),
             ThreadedTCPClient("127.0.0.1", port)).activate()

It writes a file, starts a TCP server on 127.0.0.1 that records what it receives, sends the
file through the pipeline at the given rate, and checks that every byte arrived.

    python examples/file_to_tcp.py [--size BYTES] [--rate BYTES_PER_SECOND]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from pcpkit.chassis import Pipeline
from pcpkit.file import RateControlledFileReader
from pcpkit.internet.threadedtcp import ThreadedTCPClient


class Recorder(Protocol):
    def connectionMade(self) -> None:
        self.sha = hashlib.sha256()
        self.count = 0

    def dataReceived(self, data: bytes) -> None:
        self.sha.update(data)
        self.count += len(data)

    def connectionLost(self, reason: object = None) -> None:
        self.factory.done.callback((self.count, self.sha.hexdigest()))  # type: ignore[attr-defined]


async def run(size: int, rate: int) -> int:
    workdir = tempfile.mkdtemp(prefix="pcpkit-file-to-tcp-")
    os.chdir(workdir)
    data = os.urandom(size)
    with open("myfile", "wb") as f:
        f.write(data)
    factory = Factory.forProtocol(Recorder)
    factory.done = Deferred()  # type: ignore[attr-defined]
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:
        start = reactor.seconds()  # type: ignore[attr-defined]
        p = Pipeline(
            RateControlledFileReader("myfile", rate=rate),
            ThreadedTCPClient("127.0.0.1", port.getHost().port),
        ).activate()
        count, digest = await factory.done  # type: ignore[attr-defined]
        elapsed = reactor.seconds() - start  # type: ignore[attr-defined]
        await p.finished
    finally:
        await port.stopListening()
        os.remove("myfile")
        os.chdir("/")
        os.rmdir(workdir)
    ok = digest == hashlib.sha256(data).hexdigest() and count == size
    print(f"sent {size} bytes at {rate} B/s: received {count} bytes in {elapsed:.2f} s "
          f"({count / elapsed / 1000:.1f} kB/s)")
    print("every byte arrived, in order" if ok else "MISMATCH: bytes lost or reordered")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--size", type=int, default=300_000)
    parser.add_argument("--rate", type=int, default=100_000)
    args = parser.parse_args(argv)
    result: list[Any] = []

    def go() -> None:
        d = ensureDeferred(run(args.size, args.rate))
        d.addBoth(result.append)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if not result or not isinstance(result[0], int):
        print(f"failed: {result[0] if result else 'reactor stopped'}", file=sys.stderr)
        return 1
    return result[0]


if __name__ == "__main__":
    sys.exit(main())
