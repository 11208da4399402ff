"""
A pipeline split across a RabbitMQ broker, with the broker's credit as back-pressure.

::

    Orders -> AMQPSink ==> queue "pcpkit-example" ==> AMQPSource -> Tally (slow)

``Orders`` makes ``COUNT`` small order objects as fast as it can; ``AMQPSink`` publishes them
as JSON with publisher confirms, and stops taking from its inbox while its window of
unconfirmed publishes is full (``Orders`` then waits in ``put``). ``AMQPSource`` consumes the
queue with a prefetch equal to ``Tally``'s inbox bound and acknowledges an order only once
``Tally`` has taken it, so a slow ``Tally`` leaves the backlog in the broker, not in memory.

Run both halves in one process (they still talk only through the broker)::

    python examples/amqp_pipeline.py amqp://guest:guest@127.0.0.1/ [COUNT]

or scale out: one producer, and as many consumer processes (on as many hosts) as you like,
each getting work as fast as it takes it::

    python examples/amqp_pipeline.py URL 10000 --produce-only
    python examples/amqp_pipeline.py URL --consume-only      # run several; Ctrl-C to stop
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater

from pcpkit import Component, ErrorInformation, ProducerFinished
from pcpkit.amqp import AMQPSink, AMQPSource, JSONMarshaller, redactURL

QUEUE = "pcpkit-example"


class Orders(Component):
    """Puts ``count`` orders (dicts) into its outbox, then ProducerFinished on signal."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    async def main(self) -> None:
        for i in range(self.count):
            await self.put({"order": i, "amount": i % 97})
        await self.put(ProducerFinished(self), "signal")


class Tally(Component):
    """Adds up the amounts, a little slowly; stops after ``count`` orders (0: never)."""

    def __init__(self, count: int, source: AMQPSource) -> None:
        super().__init__()
        self.count = count
        self.source = source
        self.orders = 0
        self.total = 0
        self.redelivered = 0

    async def main(self) -> None:
        while not self.count or self.orders < self.count:
            msg = await self.get("inbox")
            self.orders += 1
            self.total += msg.body["amount"]
            self.redelivered += msg.redelivered
            if self.orders % 100 == 0:
                await deferLater(_reactor, 0.01, lambda: None)  # the slow part
        # Stop consuming; what was taken has been acknowledged, the rest stays queued.
        self.source.inboxes["control"].deliver(ProducerFinished(self))


class Errors(Component):
    """Prints every ErrorInformation from the broker components; ends on their end."""

    async def main(self) -> None:
        while True:
            msg = await self.get("inbox")
            if isinstance(msg, ErrorInformation):
                print(f"error: {msg}", file=sys.stderr)
            else:
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the broker, amqp://user:password@host:port/vhost")
    parser.add_argument("count", nargs="?", type=int, default=1000)
    parser.add_argument("--produce-only", action="store_true")
    parser.add_argument("--consume-only", action="store_true")
    args = parser.parse_args(argv)
    produce, consume = not args.consume_only, not args.produce_only
    reactor: Any = _reactor
    parts: list[Component] = []
    watched: list[Component] = []

    if produce:
        orders = Orders(args.count)
        sink = AMQPSink("", QUEUE, url=args.url, marshaller=JSONMarshaller, window=64, declare=True)
        errors = Errors()
        orders.link((orders, "outbox"), (sink, "inbox"))
        orders.link((orders, "signal"), (sink, "control"))
        sink.link((sink, "signal"), (errors, "inbox"))
        parts += [orders, sink, errors]
        watched.append(errors)
    if consume:
        source = AMQPSource(QUEUE, url=args.url, marshaller=JSONMarshaller, declare=True)
        tally = Tally(args.count if produce else 0, source)
        tally.setInboxSize("inbox", 32)  # also the broker's prefetch for this consumer
        errors2 = Errors()
        source.link((source, "outbox"), (tally, "inbox"))
        source.link((source, "signal"), (errors2, "inbox"))
        parts += [source, tally, errors2]
        watched.append(errors2)

    failed: list[str] = []

    def start() -> None:
        for p in parts:
            p.activate()
        remaining = [len(watched)]

        def done(_: object) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                reactor.stop()

        for w in watched:
            w.finished.addBoth(done)

    reactor.callWhenRunning(start)
    reactor.run()
    if produce:
        print(f"published {sink.confirmed} orders to {QUEUE!r} on {redactURL(args.url)}")
        if sink.confirmed != args.count:
            failed.append("not every order was confirmed")
    if consume:
        print(
            f"tallied {tally.orders} orders, total amount {tally.total} "
            f"({tally.redelivered} redelivered)"
        )
        if produce and tally.orders != args.count:
            failed.append("not every order was tallied")
    for f in failed:
        print(f"error: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
