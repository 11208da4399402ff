"""
An echo server built from components: ``SimpleServer`` gives each connection its own
``Echo`` component, whose inbox is the socket's input and whose outbox is its output.

    python examples/echo_server.py              # serve on 127.0.0.1:1601 until Ctrl-C
    python examples/echo_server.py --selftest   # serve, talk to it with 20 clients, exit

The self-test connects ``TCPClient`` components to it, checks every echo, and stops.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred

from pcpkit import Component, SocketShutdown, producerFinished
from pcpkit.internet.tcp import SimpleServer, TCPClient


class Echo(Component):
    """Sends back what it receives; ends when the peer goes."""

    async def main(self) -> None:
        async for data in self.messages("inbox"):
            await self.put(data, "outbox")


class Expect(Component):
    """Collects bytes until it has ``size``; then asks the client to close."""

    def __init__(self, size: int, **argd: Any) -> None:
        super().__init__(**argd)
        self.size = size
        self.got = b""

    def main(self) -> Generator[int, None, bytes]:
        while True:
            while self.dataReady("inbox"):
                self.got += self.recv("inbox")
                if len(self.got) >= self.size:
                    self.send(producerFinished(self), "signal")
            if self.dataReady("control"):
                if isinstance(self.recv("control"), SocketShutdown):
                    return self.got
            self.pause()
            yield 1


async def selftest(clients: int) -> int:
    server = SimpleServer(Echo, port=0)
    server.activate()
    port = await server.listening
    print(f"echo server listening on 127.0.0.1:{port}")
    checks = []
    for i in range(clients):
        message = f"hello from client {i}\n".encode() * 100
        client = TCPClient("127.0.0.1", port)
        expect = Expect(len(message))
        client.link((client, "outbox"), (expect, "inbox"))
        client.link((client, "signal"), (expect, "control"))
        expect.link((expect, "signal"), (client, "control"))
        client.activate()
        expect.activate()
        client.inboxes["inbox"].deliver(message)
        checks.append((message, expect))
    await DeferredList([e.finished for _, e in checks])
    ok = sum(1 for message, e in checks if e.got == message)
    print(f"{ok} of {clients} clients got their exact echo")
    server.inboxes["control"].deliver(producerFinished())
    await server.finished
    return 0 if ok == clients else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pcpkit echo server")
    parser.add_argument("--port", type=int, default=1601)
    parser.add_argument("--selftest", action="store_true")
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args(argv)
    if not args.selftest:
        print(f"echo server on 127.0.0.1:{args.port} (Ctrl-C to stop)")
        SimpleServer(Echo, port=args.port).run()
        return 0
    result: list[Any] = []

    def go() -> None:
        d = ensureDeferred(selftest(args.clients))
        d.addBoth(result.append)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return result[0] if result and isinstance(result[0], int) else 1


if __name__ == "__main__":
    sys.exit(main())
