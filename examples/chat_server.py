"""
A chat server from building blocks: line framing + a Backplane.

Each connection is a ``Graphline``: the socket's bytes are cut into lines
(``LineDeframer``) and published to the backplane (``PublishTo``); everything published
comes back from the backplane (``SubscribeTo``), is framed as lines (``LineFramer``) and
written to the socket. A client that stops reading never slows the others: its subscription
holds at most ``--queue`` lines and drops the rest (counted) while it is stuck.

    python examples/chat_server.py                # serve on 127.0.0.1:1602 until Ctrl-C
    python examples/chat_server.py --selftest     # 20 chatting clients + 1 that never reads

Try it with ``socat - TCP:127.0.0.1:1602`` in two terminals.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

from pcpkit import ProducerFinished, ShutdownMicroprocess
from pcpkit.chassis import Graphline
from pcpkit.internet.tcp import SimpleServer
from pcpkit.util import Backplane, LineDeframer, LineFramer, PublishTo, SubscribeTo


def chatConnection(name: str = "chat", queue: int = 64) -> Graphline:
    """One connection: lines in -> the backplane -> lines out."""
    return Graphline(
        LINES=LineDeframer(b"\n", maxLength=4096),
        PUB=PublishTo(name),
        SUB=SubscribeTo(name, policy="drop", size=queue),
        FRAME=LineFramer(b"\n"),
        linkages={
            ("self", "inbox"): ("LINES", "inbox"),
            ("self", "control"): ("LINES", "control"),
            ("LINES", "outbox"): ("PUB", "inbox"),
            ("LINES", "signal"): ("PUB", "control"),
            ("PUB", "signal"): ("SUB", "control"),
            ("SUB", "outbox"): ("FRAME", "inbox"),
            ("SUB", "signal"): ("FRAME", "control"),
            ("FRAME", "outbox"): ("self", "outbox"),
            ("FRAME", "signal"): ("self", "signal"),
        },
    )


class Chatter(Protocol):
    """A self-test client: says its lines, listens until it has heard ``expected``."""

    def __init__(self, ident: int, lines: int, expected: int) -> None:
        self.ident = ident
        self.count = lines
        self.expected = expected
        self.buffer = b""
        self.heard: list[bytes] = []
        self.done: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"".join(say(self.ident, n) for n in range(self.count))
        )

    def dataReceived(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        self.heard.extend(lines)
        if len(self.heard) >= self.expected and not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


def say(ident: int, n: int) -> bytes:
    return b"client %d says %d " % (ident, n) + b"." * 150 + b"\n"


async def selftest(clients: int, lines: int, queue: int) -> int:
    backplane = Backplane("chat")
    backplane.activate()
    server = SimpleServer(lambda: chatConnection("chat", queue), port=0)
    server.activate()
    port = await server.listening
    print(f"chat server listening on 127.0.0.1:{port}")
    # the client that never reads, with small socket buffers so it is stuck soon
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    stuck.connect(("127.0.0.1", port))
    while not server.connections:
        await deferLater(reactor, 0.01, lambda: None)
    (handler,) = server.connections
    handler.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stuckSub = handler.component.components["SUB"]

    total = (clients + 1) * lines
    chatters = [Chatter(i, lines, total) for i in range(1, clients + 1)]
    ep = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await gatherResults([connectProtocol(ep, c) for c in chatters])
    while len(backplane.splitter.outlets) < clients + 1:
        await deferLater(reactor, 0.01, lambda: None)
    stuck.sendall(b"".join(say(0, n) for n in range(lines)))
    await gatherResults([c.done for c in chatters])

    ok = True
    for c in chatters:
        for ident in range(clients + 1):
            mine = [m for m in c.heard if m.startswith(b"client %d says" % ident)]
            if mine != [say(ident, n)[:-1] for n in range(lines)]:
                print(f"FAIL: client {c.ident} heard client {ident} wrong")
                ok = False
    for c in chatters:
        c.transport.loseConnection()  # type: ignore[union-attr]
    stuck.close()
    await gatherResults([c.lost for c in chatters])
    server.inboxes["control"].deliver(ShutdownMicroprocess())
    await server.finished
    backplane.inboxes["control"].final.deliver(ProducerFinished())
    await backplane.finished
    peak = stuckSub.outlet.peak
    print(
        f"{clients} clients each heard all {total} lines, in order per speaker; "
        f"the client that never reads: {stuckSub.dropped} lines dropped, "
        f"its queue never above {peak} (bound {queue})"
    )
    if ok and stuckSub.dropped > 0 and peak <= queue:
        print("OK")
        return 0
    return 1


async def serve(port: int, queue: int) -> int:
    Backplane("chat").activate()
    server = SimpleServer(
        lambda: chatConnection("chat", queue), endpoint=f"tcp:{port}:interface=127.0.0.1"
    )
    server.activate()
    print(f"chat server listening on 127.0.0.1:{await server.listening}")
    await server.finished
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=1602, help="port on 127.0.0.1")
    parser.add_argument("--queue", type=int, default=64, help="lines held per slow client")
    parser.add_argument("--selftest", action="store_true", help="run the self-test and exit")
    parser.add_argument("--clients", type=int, default=20, help="self-test clients")
    parser.add_argument("--lines", type=int, default=60, help="lines per self-test client")
    args = parser.parse_args()
    if args.queue < 1:
        parser.error(f"--queue must be at least 1, not {args.queue}")
    if not args.selftest:
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted does
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError as e:
            parser.error(f"--port {args.port}: cannot listen on 127.0.0.1: {e.strerror}")
        finally:
            probe.close()
    outcome: list[int] = []

    def run() -> None:
        if args.selftest:
            d = ensureDeferred(selftest(args.clients, args.lines, args.queue))
        else:
            d = ensureDeferred(serve(args.port, args.queue))

        def done(result: Any) -> None:
            if isinstance(result, int):
                outcome.append(result)
            else:
                print(f"error: {result.getErrorMessage()}", file=sys.stderr)
                outcome.append(1)
            reactor.stop()  # type: ignore[attr-defined]

        d.addBoth(done)

    reactor.callWhenRunning(run)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if outcome:
        return outcome[0]
    return 1 if args.selftest else 0  # the server was stopped (Ctrl-C)


if __name__ == "__main__":
    sys.exit(main())
